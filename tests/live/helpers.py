"""Readings and clocks for the live-face tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from recorder.observer import Reading
from recorder.protocol.barcode import barcode_from_address
from recorder.protocol.events import PowerReport

T0 = datetime(2025, 6, 21, 12, 0, tzinfo=UTC)
GATEWAY = 4609


def address(number: int) -> bytes:
    return bytes.fromhex("04C05B4000") + number.to_bytes(3, "big")


def reading(
    node_id: int,
    seconds: float,
    *,
    long_address: bytes | None = None,
    voltage_in_raw: int = 650,  # 32.5 V
    current_in_raw: int = 1800,  # 9 A
    duty_cycle_raw: int = 255,
    temperature_raw: int = 553,
    gateway_id: int = GATEWAY,
) -> Reading:
    at = T0 + timedelta(seconds=seconds)
    return Reading(
        gateway_id=gateway_id,
        node_id=node_id,
        measured_at=at,
        received_at=at + timedelta(seconds=1),
        report=PowerReport(
            voltage_in_raw=voltage_in_raw,
            voltage_out_raw=325,
            duty_cycle_raw=duty_cycle_raw,
            current_in_raw=current_in_raw,
            temperature_raw=temperature_raw,
            unknown=b"\x00\x00\x00",
            slot_counter=int(seconds * 200) % 0xFFFF,
            rssi=180,
        ),
        long_address=long_address,
        barcode=barcode_from_address(long_address) if long_address else None,
    )


class FakeMonotonic:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
