"""Everything the protocol stack can tell its caller, as frozen dataclasses.

Values decoded from PV packets (`PowerReport`, `TopologyReport`, ...) keep the raw integers from
the wire and expose engineering units as properties, so encoders and decoders round-trip
exactly and unit conversions live in one place.

Events always carry the gateway they came through and `received_at`, the receive timestamp of
the frame that completed them (given to `Stack.feed`, never read from a clock).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from recorder.protocol.barcode import barcode_from_address

# --------------------------------------------------------------------------------------------
# PV application values


class PowerReport(NamedTuple):
    """PV packet 0x31: one optimizer measurement. Raw wire integers; units via properties.

    A NamedTuple rather than a frozen dataclass only because it is built for every report on
    the decoder's hot path and is several times cheaper to construct; it is just as immutable.
    """

    voltage_in_raw: int  # 12 bits, 50 mV steps
    voltage_out_raw: int  # 12 bits, 100 mV steps
    duty_cycle_raw: int  # 8 bits, 255 = 100 %
    current_in_raw: int  # 12 bits, 5 mA steps; the optimizer's *input* current (NOTES 5)
    temperature_raw: int  # 12-bit two's complement already sign-extended, 0.1 °C steps
    unknown: bytes  # 3 bytes of unknown meaning, kept verbatim
    slot_counter: int  # gateway slot counter when the measurement was taken
    rssi: int  # raw byte; its dBm scale is unknown for newer radios (NOTES 8)
    tail: bytes = b""  # bytes beyond the 13 we understand (firmware 4.x sends 1-2 more)

    @property
    def voltage_in(self) -> float:
        return self.voltage_in_raw / 20  # × 0.05 V

    @property
    def voltage_out(self) -> float:
        return self.voltage_out_raw / 10  # × 0.1 V

    @property
    def duty_cycle(self) -> float:
        return self.duty_cycle_raw / 255

    @property
    def current_in(self) -> float:
        return self.current_in_raw / 200  # × 0.005 A

    @property
    def temperature(self) -> float:
        return self.temperature_raw / 10  # × 0.1 °C

    @property
    def power(self) -> float:
        """Input power, Vin × Iin. (Vout × I under-reports a bucking, shaded panel.)"""
        # One division of integers: the float is the exact product, correctly rounded.
        return self.voltage_in_raw * self.current_in_raw / 4000  # (raw/20 V) × (raw/200 A)

    @property
    def current_out(self) -> float | None:
        """Estimated output current Iin / duty; None when the duty cycle is zero."""
        if self.duty_cycle_raw == 0:
            return None
        return self.current_in_raw * 255 / (200 * self.duty_cycle_raw)


@dataclass(frozen=True, slots=True)
class TopologyReport:
    """PV packet 0x09: a node announcing itself and its route to the gateway."""

    short_address: int
    node_id: int
    next_hop: int
    unknown: bytes  # 2 bytes
    long_address: bytes  # 8 bytes
    rssi: int
    tail: bytes  # the remaining bytes of unknown meaning

    @property
    def barcode(self) -> str | None:
        return barcode_from_address(self.long_address)


@dataclass(frozen=True, slots=True)
class NodeTableEntry:
    long_address: bytes
    node_id: int

    @property
    def barcode(self) -> str | None:
        return barcode_from_address(self.long_address)


# --------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True, slots=True)
class PowerReportReceived:
    gateway_id: int
    node_id: int
    received_at: datetime
    gateway_slot_counter: int  # the counter in the receive response that carried the report
    report: PowerReport


@dataclass(frozen=True, slots=True)
class TopologyReportReceived:
    gateway_id: int
    node_id: int  # from the packet header
    received_at: datetime
    report: TopologyReport


@dataclass(frozen=True, slots=True)
class NodeTablePage:
    """One node table response (PV 0x27) paired with the request (PV 0x26) that asked for it."""

    gateway_id: int
    requested_index: int | None  # None when the request was not seen
    start_index: int
    entries: tuple[NodeTableEntry, ...]
    received_at: datetime

    @property
    def is_end(self) -> bool:
        return not self.entries


@dataclass(frozen=True, slots=True)
class StringRequestSent:
    gateway_id: int
    node_id: int
    text: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class StringResponseReceived:
    gateway_id: int
    node_id: int
    text: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class NetworkStatus:
    """PV 0x2F: the gateway's view of the mesh. The three counts usually agree."""

    gateway_id: int
    unknown: int
    counter: int
    node_counts: tuple[int, int, int]
    received_at: datetime


@dataclass(frozen=True, slots=True)
class GatewayRadioConfiguration:
    """PV 0x0E. The AES key it contains is deliberately not kept in the event."""

    gateway_id: int
    channel: int
    pan_id: int
    received_at: datetime


@dataclass(frozen=True, slots=True)
class PvConfigurationRequested:
    """PV 0x13: the controller assigns a node its report period and phase (in slots)."""

    gateway_id: int
    node_id: int
    report_type: int
    period_slots: int
    phase_slots: int
    received_at: datetime


@dataclass(frozen=True, slots=True)
class PvConfigurationReceived:
    """PV 0x18: a node echoes its radio and report configuration."""

    gateway_id: int
    node_id: int
    pan_id: int
    channel: int
    report_type: int | None
    period_slots: int | None
    phase_slots: int | None
    received_at: datetime


@dataclass(frozen=True, slots=True)
class BroadcastSent:
    """PV 0x22 to the broadcast node; `pv_off` is None for the empty keep-alive form."""

    gateway_id: int
    node_id: int
    pv_off: bool | None
    received_at: datetime


@dataclass(frozen=True, slots=True)
class UnknownPacketReceived:
    """A PV packet of a type we do not decode, kept raw (from a node, or a command exchange)."""

    gateway_id: int
    node_id: int | None
    packet_type: int
    data: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class GatewayIdentityObserved:
    """A gateway's long address (frame 0x0039 during enumeration, 0x003B identify)."""

    gateway_id: int
    long_address: bytes
    during_enumeration: bool
    received_at: datetime

    @property
    def barcode(self) -> str | None:
        return barcode_from_address(self.long_address)


@dataclass(frozen=True, slots=True)
class GatewayVersionObserved:
    gateway_id: int
    version: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class EnumerationStarted:
    enumeration_gateway_id: int
    received_at: datetime


@dataclass(frozen=True, slots=True)
class GatewayIdAssigned:
    """Frame 0x003C: the gateway with `long_address`, addressed at `gateway_id`, becomes `new_gateway_id`."""

    gateway_id: int
    long_address: bytes
    new_gateway_id: int
    received_at: datetime


@dataclass(frozen=True, slots=True)
class EnumerationEnded:
    gateway_id: int
    received_at: datetime


@dataclass(frozen=True, slots=True)
class FrameSeen:
    """Verbose mode only: a one-line description of any transport frame, for `peek activity`."""

    gateway_id: int
    from_gateway: bool
    frame_type: int
    name: str
    summary: str
    received_at: datetime


Event = (
    PowerReportReceived
    | TopologyReportReceived
    | NodeTablePage
    | StringRequestSent
    | StringResponseReceived
    | NetworkStatus
    | GatewayRadioConfiguration
    | PvConfigurationRequested
    | PvConfigurationReceived
    | BroadcastSent
    | UnknownPacketReceived
    | GatewayIdentityObserved
    | GatewayVersionObserved
    | EnumerationStarted
    | GatewayIdAssigned
    | EnumerationEnded
    | FrameSeen
)
