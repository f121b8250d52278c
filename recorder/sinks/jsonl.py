"""JSON-lines rendering of what the recorder observes (`recorder observe`).

The key names are a public interface (other tools parse them); change them only additively.
`gateway_id` and `node_id` are the raw integers from the bus.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

from recorder.observer import GatewayLearned, NodeTableAssembled
from recorder.protocol import units
from recorder.protocol.barcode import barcode_from_address, format_long_address
from recorder.protocol.events import TopologyReportReceived
from recorder.reading import Reading
from recorder.timestamps import from_millis


def iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds")


barcode_of = lru_cache(maxsize=4096)(barcode_from_address)


def reading_json(reading: Reading) -> dict[str, Any]:
    (gateway_id, node_id, measured_ms, received_ms, slot_counter, voltage_in, voltage_out, duty_cycle,
     current_in, temperature, rssi, long_address) = reading  # fmt: skip
    return {
        "type": "power_report",
        "gateway_id": gateway_id,
        "node_id": node_id,
        "barcode": None if long_address is None else barcode_of(long_address),
        "measured_at": iso(from_millis(measured_ms)),
        "received_at": iso(from_millis(received_ms)),
        "slot_counter": slot_counter,
        "voltage_in": units.voltage_in(voltage_in),
        "voltage_out": units.voltage_out(voltage_out),
        "current_in": units.current_in(current_in),
        "current_out": units.current_out(current_in, duty_cycle),
        "power": units.power(voltage_in, current_in),
        "duty_cycle": units.duty_cycle(duty_cycle),
        "temperature": units.temperature(temperature),
        "rssi": rssi,
    }


def node_table_json(table: NodeTableAssembled) -> dict[str, Any]:
    return {
        "type": "node_table",
        "gateway_id": table.gateway_id,
        "completed_at": iso(table.completed_at),
        "nodes": [
            {
                "node_id": entry.node_id,
                "long_address": format_long_address(entry.long_address),
                "barcode": barcode_from_address(entry.long_address),
            }
            for entry in table.entries
        ],
    }


def topology_report_json(event: TopologyReportReceived) -> dict[str, Any]:
    report = event.report
    return {
        "type": "topology_report",
        "gateway_id": event.gateway_id,
        "node_id": report.node_id or event.node_id,
        "short_address": report.short_address,
        "next_hop": report.next_hop,
        "long_address": format_long_address(report.long_address),
        "barcode": report.barcode,
        "rssi": report.rssi,
        "received_at": iso(event.received_at),
    }


def gateway_json(learned: GatewayLearned) -> list[dict[str, Any]]:
    """One line per fact: identity and version are reported separately."""
    lines: list[dict[str, Any]] = []
    if learned.long_address is not None:
        lines.append(
            {
                "type": "gateway_identity",
                "gateway_id": learned.gateway_id,
                "long_address": format_long_address(learned.long_address),
                "barcode": barcode_from_address(learned.long_address),
            }
        )
    if learned.version is not None:
        lines.append(
            {"type": "gateway_version", "gateway_id": learned.gateway_id, "version": learned.version}
        )
    return lines


def dumps(line: dict[str, Any]) -> str:
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False)
