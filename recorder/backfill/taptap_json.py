"""taptap's JSON lines (the output of `taptap observe`), recognised by their content.

`recorder backfill` imports the logs people kept while they ran taptap. Versions of taptap
print their events differently and none can be told by a tag (the original prints no
`event_type` at all), so each line is recognised by the fields it holds:

* **Power report, nested** (the original `taptap observe`): `{"gateway": {"id": 4609},
  "node": {"id": 116}, "timestamp": "2024-08-24T09:16:41.686961-05:00", "voltage_in": 30.6,
  "voltage_out": 30.2, "current": 6.94, "dc_dc_duty_cycle": 1.0, "temperature": 26.8,
  "rssi": 132}`. `gateway` and `node` are objects with an `id` and, once taptap knew them,
  an `address` (an array of eight byte values) and for the node a `barcode`.
* **Power report, flat** (the fork): the same values with `"event_type": "power_report"` (or
  `"type"`), and `gateway`/`node` as plain numbers: `"gateway": 4609, "node": 116`.
  Either form may also arrive wrapped as `{"PowerReport": {...}}` (serde's default tagging).
* **Infrastructure report** (the fork, printed at start and whenever identity changes):
  `{"event_type": "infrastructure_report", "gateways": {"4609": {"address": A, "version": V}},
  "nodes": {"4609": {"116": {"address": A, "barcode": B}}}}`, where an address A is
  `"04:C0:5B:40:00:9A:57:A2"` or an array of eight byte values, and a node may give only its
  barcode.

Timestamps must carry a UTC offset (any offset; `Z` too) and may have 0 to 9 fraction digits;
a reading's time is its timestamp in whole milliseconds, rounded down, as for bus data. Values
are turned back into the wire's integers (50 mV, 100 mV, 5 mA, 0.1 °C and 1/255 steps), so a
point from a taptap line is the point `recorder run` would have written from the same report.
A node's `address` names it; without one, its `barcode` does.

A line of another shape (not JSON, another event, a field missing or out of range) is returned
as `Unrecognised` with the reason, for the caller to count: the file's other lines still count.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from recorder.protocol.barcode import address_from_barcode, parse_long_address
from recorder.sources import open_dump
from recorder.timestamps import to_millis

# Raw wire integers in `sinks.points.optimizer_fields` order: voltage in, voltage out, duty
# cycle, current in, temperature, RSSI.
Values = tuple[int, int, int, int, int, int]

MAX_LINE_BYTES = 1_000_000  # an infrastructure report of 1000 optimizers is under 100 kB
POWER_REPORT = "power_report"
INFRASTRUCTURE_REPORT = "infrastructure_report"
_POWER_FIELDS = frozenset(
    ("gateway", "node", "timestamp", "voltage_in", "voltage_out", "temperature", "rssi")
)


@dataclass(frozen=True, slots=True)
class PowerLine:
    """One optimizer reading, with the identity the line itself carries (if any)."""

    gateway_id: int
    node_id: int
    measured_at: datetime
    measured_ms: int
    values: Values
    node_address: bytes | None
    gateway_address: bytes | None


@dataclass(frozen=True, slots=True)
class InfrastructureLine:
    """Identity as taptap knew it when it printed the line (no time of its own)."""

    nodes: tuple[tuple[int, int, bytes], ...]  # (gateway ID, node ID, long address)
    gateways: tuple[tuple[int, bytes | None, str | None], ...]  # (gateway ID, address, version)


@dataclass(frozen=True, slots=True)
class Unrecognised:
    """A line of no taptap shape we know, and why (the backfill leaves it out and counts it)."""

    reason: str


Line = PowerLine | InfrastructureLine | Unrecognised


class _Shape(ValueError):
    """The line is not of a shape we know (the message says why)."""


def read_lines(path: Path) -> Iterator[tuple[int, Line]]:
    """(line number, what it is) for each non-blank line of a file, gzip-compressed or not.

    A line longer than `MAX_LINE_BYTES` is unrecognised without being held in memory (a file
    of zeros or a binary dump can be one "line" of gigabytes). Raises OSError, EOFError or
    zlib.error when the file itself cannot be read further.
    """
    with open_dump(path) as stream:
        number = 0
        while raw := stream.readline(MAX_LINE_BYTES):
            number += 1
            if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while (rest := stream.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass  # skip to the end of the line
                yield number, Unrecognised(f"a line longer than {MAX_LINE_BYTES // 1_000_000} MB")
            elif raw.strip():
                yield number, parse_line(raw)


def parse_line(raw: bytes | str) -> Line:
    try:
        record = json.loads(raw)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        return Unrecognised(f"not JSON ({error})")
    try:
        return _recognise(record)
    except _Shape as error:
        return Unrecognised(str(error))


def _recognise(record: Any) -> PowerLine | InfrastructureLine:
    if not isinstance(record, dict):
        raise _Shape(f"a JSON {type(record).__name__}, not an object")
    if len(record) == 1:  # {"PowerReport": {...}}: serde's externally tagged form
        (inner,) = record.values()
        if isinstance(inner, dict) and "gateway" in inner:
            record = inner
    tag = record.get("event_type", record.get("type"))
    if tag not in (None, POWER_REPORT, INFRASTRUCTURE_REPORT):
        raise _Shape(f"an event of type {tag!r}, neither a power report nor an infrastructure report")
    if tag != INFRASTRUCTURE_REPORT and record.keys() >= _POWER_FIELDS:
        return _power_line(record)
    if tag != POWER_REPORT and isinstance(record.get("nodes"), dict):
        return _infrastructure_line(record)
    missing = sorted(_POWER_FIELDS - record.keys())
    raise _Shape(f"neither a power report (no {', '.join(missing)}) nor an infrastructure report")


def _power_line(record: dict[str, Any]) -> PowerLine:
    gateway_id, gateway_address, _ = _identity(record["gateway"], "gateway", 0x7FFF)
    node_id, node_address, node_barcode = _identity(record["node"], "node", 0xFFFF)
    if node_address is None and node_barcode is not None:
        node_address = node_barcode
    measured_at = _timestamp(record["timestamp"])
    current = record.get("current", record.get("current_in"))
    duty = record.get("dc_dc_duty_cycle", record.get("duty_cycle"))
    values = (
        _step(record["voltage_in"], 20, 0, 4095, "voltage_in"),  # 50 mV
        _step(record["voltage_out"], 10, 0, 4095, "voltage_out"),  # 100 mV
        _step(duty, 255, 0, 255, "dc_dc_duty_cycle"),  # 1/255
        _step(current, 200, 0, 4095, "current"),  # 5 mA
        _step(record["temperature"], 10, -2048, 2047, "temperature"),  # 0.1 °C, 12-bit signed
        _step(record["rssi"], 1, 0, 255, "rssi"),
    )
    return PowerLine(
        gateway_id, node_id, measured_at, to_millis(measured_at), values, node_address, gateway_address
    )


def infrastructure_report(record: Any) -> InfrastructureLine:
    """An infrastructure report already parsed from JSON (`recorder nodes import` reads one
    file of it). Raises ValueError saying what is wrong with it."""
    if not isinstance(record, dict) or not isinstance(record.get("nodes"), dict):
        raise ValueError("an infrastructure report needs a `nodes` object keyed by gateway ID")
    return _infrastructure_line(record)


def _infrastructure_line(record: dict[str, Any]) -> InfrastructureLine:
    nodes: list[tuple[int, int, bytes]] = []
    for gateway_key, table in record["nodes"].items():
        gateway_id = _number(gateway_key, "gateway", 0x7FFF)
        if not isinstance(table, dict):
            raise _Shape(f"nodes of gateway {gateway_key} are not an object")
        for node_key, node in table.items():
            node_id = _number(node_key, "node", 0xFFFF)
            if not isinstance(node, dict):
                raise _Shape(f"node {node_key} of gateway {gateway_key} is not an object")
            address = _address(node.get("address"))
            barcode = _barcode(node.get("barcode"))
            if address is not None and barcode is not None and address != barcode:
                raise _Shape(
                    f"node {node_key}: barcode {node['barcode']} does not belong to the address given with it"
                )
            address = address or barcode
            if address is None:
                raise _Shape(f"node {node_key} of gateway {gateway_key} has neither address nor barcode")
            nodes.append((gateway_id, node_id, address))
    gateways: list[tuple[int, bytes | None, str | None]] = []
    for gateway_key, gateway in (record.get("gateways") or {}).items():
        if not isinstance(gateway, dict):
            raise _Shape(f"gateway {gateway_key} is not an object")
        version = gateway.get("version")
        gateways.append(
            (
                _number(gateway_key, "gateway", 0x7FFF),
                _address(gateway.get("address")),
                version.strip() or None if isinstance(version, str) else None,
            )
        )
    return InfrastructureLine(tuple(nodes), tuple(gateways))


def _identity(value: Any, what: str, highest: int) -> tuple[int, bytes | None, bytes | None]:
    """(ID, address, address from the barcode) of `4609` or `{"id": 4609, "address": ..., ...}`."""
    if isinstance(value, dict):
        if "id" not in value:
            raise _Shape(f"{what} has no id")
        number = _number(value["id"], what, highest)
        return number, _address(value.get("address")), _barcode(value.get("barcode"))
    return _number(value, what, highest), None, None


def _number(value: Any, what: str, highest: int) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= highest:
        raise _Shape(f"{what} ID {value!r} is not a number from 0 to {highest}")
    return value


def _address(value: Any) -> bytes | None:
    """`"04:C0:5B:40:00:9A:57:A2"`, eight byte values, or nothing."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return parse_long_address(value)
        except ValueError:
            raise _Shape(f"address {value!r} is not a long address like 04:C0:5B:40:00:9A:57:A2") from None
    if (
        isinstance(value, list)
        and len(value) == 8
        and all(isinstance(byte, int) and not isinstance(byte, bool) and 0 <= byte <= 255 for byte in value)
    ):
        return bytes(value)
    raise _Shape(f"address {value!r} is neither text like 04:C0:5B:40:00:9A:57:A2 nor eight byte values")


def _barcode(value: Any) -> bytes | None:
    """The long address behind a barcode, or None when there is none (or it is malformed)."""
    if not isinstance(value, str):
        return None
    try:
        return address_from_barcode(value)
    except ValueError:
        return None


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise _Shape(f"timestamp {value!r} is not text")
    try:
        at = datetime.fromisoformat(value)  # any offset, 0-9 fraction digits (beyond 6 dropped)
    except ValueError:
        raise _Shape(f"timestamp {value!r} is not ISO-8601") from None
    if at.tzinfo is None:
        raise _Shape(f"timestamp {value!r} has no UTC offset")
    return at


def _step(value: Any, per_unit: int, low: int, high: int, what: str) -> int:
    """A value in wire steps (`per_unit` steps per unit), checked against the wire's range."""
    if type(value) is not float and type(value) is not int:  # (the hot path: no isinstance)
        raise _Shape(f"{what} {value!r} is not a number")
    try:
        steps = round(value * per_unit)
    except (ValueError, OverflowError):  # NaN, infinity
        raise _Shape(f"{what} {value!r} is not a number") from None
    if not low <= steps <= high:
        raise _Shape(f"{what} {value!r} is outside what a power report can carry")
    return steps
