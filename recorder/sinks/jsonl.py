"""JSON-lines rendering of what the recorder observes (`recorder observe`).

The key names are a public interface (other tools parse them); change them only additively.
`gateway_id` and `node_id` are the raw integers from the bus.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from recorder.observer import GatewayLearned, NodeTableAssembled, Reading
from recorder.protocol.barcode import barcode_from_address, format_long_address
from recorder.protocol.events import TopologyReportReceived


def iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds")


def reading_json(reading: Reading) -> dict[str, Any]:
    report = reading.report
    return {
        "type": "power_report",
        "gateway_id": reading.gateway_id,
        "node_id": reading.node_id,
        "barcode": reading.barcode,
        "measured_at": iso(reading.measured_at),
        "received_at": iso(reading.received_at),
        "slot_counter": report.slot_counter,
        "voltage_in": report.voltage_in,
        "voltage_out": report.voltage_out,
        "current_in": report.current_in,
        "current_out": report.current_out,
        "power": report.power,
        "duty_cycle": report.duty_cycle,
        "temperature": report.temperature,
        "rssi": report.rssi,
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
