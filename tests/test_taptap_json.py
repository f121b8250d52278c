"""taptap's JSON lines, recognised by content (`recorder.backfill.taptap_json`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from recorder.backfill.taptap_json import InfrastructureLine, PowerLine, Unrecognised, parse_line
from recorder.protocol.barcode import address_from_barcode

ADDRESS = address_from_barcode("4-9A57A2L")
GATEWAY_ADDRESS = address_from_barcode("3-2BE16Y")
VALUES = {
    "voltage_in": 30.6,
    "voltage_out": 30.2,
    "current": 6.94,
    "dc_dc_duty_cycle": 0.7607843137254902,
    "temperature": -1.5,
    "rssi": 132,
}
RAW = (612, 302, 194, 1388, -15, 132)  # the wire's integers for VALUES
SEED = {
    "gateway": {"id": 4609, "address": list(GATEWAY_ADDRESS)},
    "node": {"id": 116, "address": list(ADDRESS), "barcode": "4-9A57A2L"},
    "timestamp": "2024-08-24T09:16:41.686961-05:00",
    **VALUES,
}
AT = datetime(2024, 8, 24, 14, 16, 41, 686961, tzinfo=UTC)


def parse(record: Any) -> Any:
    return parse_line(json.dumps(record).encode())


def test_the_seed_shape_nested_and_untagged() -> None:
    line = parse(SEED)
    assert line == PowerLine(4609, 116, AT, 1724509001686, RAW, ADDRESS, GATEWAY_ADDRESS)
    assert line.measured_at.utcoffset() == timedelta(hours=-5)
    bare = parse({**SEED, "gateway": {"id": 4609}, "node": {"id": 116}})
    assert isinstance(bare, PowerLine) and bare.node_address is None and bare.gateway_address is None
    by_barcode = parse({**SEED, "node": {"id": 116, "barcode": "4-9A57A2L"}})
    assert isinstance(by_barcode, PowerLine) and by_barcode.node_address == ADDRESS


def test_the_fork_shape_flat_and_tagged() -> None:
    flat = {**SEED, "event_type": "power_report", "gateway": 4609, "node": 116}
    line = parse(flat)
    assert isinstance(line, PowerLine) and (line.gateway_id, line.node_id, line.values) == (4609, 116, RAW)
    assert line.node_address is None
    assert parse({**flat, "event_type": None, "type": "power_report"}) == line
    assert parse({"PowerReport": flat}) == line  # serde's externally tagged form


@pytest.mark.parametrize("digits", range(10))
@pytest.mark.parametrize("offset", ["-05:00", "+00:00", "Z", "+05:30", "+14:00"])
def test_any_offset_and_zero_to_nine_fraction_digits(digits: int, offset: str) -> None:
    fraction = "." + "123456789"[:digits] if digits else ""
    line = parse({**SEED, "timestamp": f"2024-08-24T09:16:41{fraction}{offset}"})
    assert isinstance(line, PowerLine)
    local = datetime(2024, 8, 24, 9, 16, 41, int(("123456" + "000000")[: min(digits, 6)].ljust(6, "0")))
    shift = {"-05:00": -5.0, "+00:00": 0.0, "Z": 0.0, "+05:30": 5.5, "+14:00": 14.0}[offset]
    expected = local.replace(tzinfo=timezone(timedelta(hours=shift)))
    assert line.measured_at == expected
    whole_ms = (expected - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert line.measured_ms == whole_ms  # rounded down, as for bus data


def test_infrastructure_reports_with_text_or_byte_array_addresses() -> None:
    report = {
        "event_type": "infrastructure_report",
        "gateways": {"4609": {"address": "04:C0:5B:30:00:02:BE:16", "version": "Mgate Version G8.59\r"}},
        "nodes": {
            "4609": {
                "116": {"address": "04:C0:5B:40:00:9A:57:A2", "barcode": "4-9A57A2L"},
                "117": {"address": list(ADDRESS)},
                "32886": {"barcode": "4-9A57A2L"},  # an alias (bit 15), by barcode only
            }
        },
    }
    line = parse(report)
    assert line == InfrastructureLine(
        ((4609, 116, ADDRESS), (4609, 117, ADDRESS), (4609, 32886, ADDRESS)),
        ((4609, GATEWAY_ADDRESS, "Mgate Version G8.59"),),
    )
    untagged = {key: value for key, value in report.items() if key != "event_type"}
    assert parse(untagged) == line


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b"this is not JSON", "not JSON"),
        (b'{"event_type": "power_rep', "not JSON"),  # cut short while taptap was killed
        (b"\x00\x00\x00\x00", "not JSON"),
        (b"[1, 2, 3]", "not an object"),
        (json.dumps({"event_type": "string_response", "text": "x"}).encode(), "'string_response'"),
        (json.dumps({k: v for k, v in SEED.items() if k != "rssi"}).encode(), "no rssi"),
        (json.dumps({**SEED, "timestamp": "2024-08-24T09:16:41"}).encode(), "no UTC offset"),
        (json.dumps({**SEED, "voltage_in": 500.0}).encode(), "outside what a power report can carry"),
        (json.dumps({**SEED, "voltage_in": float("nan")}).encode(), "voltage_in nan is not a number"),
        (json.dumps({**SEED, "rssi": True}).encode(), "rssi True is not a number"),
        (json.dumps({**SEED, "current": "6.94"}).encode(), "current '6.94' is not a number"),
        (json.dumps({**SEED, "node": {"id": "x"}}).encode(), "node ID 'x'"),
        (json.dumps({**SEED, "node": {"id": 116, "address": [1, 2]}}).encode(), "eight byte values"),
        (json.dumps({"nodes": {"4609": {"116": {}}}}).encode(), "neither address nor barcode"),
        (
            json.dumps(
                {"nodes": {"4609": {"116": {"address": list(ADDRESS), "barcode": "4-C286CCZ"}}}}
            ).encode(),
            "does not belong",
        ),
    ],
)
def test_other_shapes_are_unrecognised_with_a_reason(text: bytes, reason: str) -> None:
    line = parse_line(text)
    assert isinstance(line, Unrecognised) and reason in line.reason, line
