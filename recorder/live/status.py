"""`/api/status`: the array and the recorder's health as one JSON document (what the page shows).

    {
      "now": ISO time of the snapshot (source time; the wall clock for live sources), null
             before the first reading,
      "stale_after_seconds": 600,
      "recorder": {version, source, source_state, last_data_at, last_data_age_seconds,
                   influxdb: {url, bucket, reachable, points_written, write_errors, last_error},
                   outbox: {ready, held, parked}, unresolved_nodes, decode_stalled,
                   counters: {bytes, frames, checksum_errors, ...}, latency_ms: {p50, p99}},
      "totals": {optimizers, reporting, stale, held, unresolved, power},
      "strings": [{name, gateway, power, best_power,
                   optimizers: [{barcode, gateway, node_id, name, string, identity, measured_at,
                                 age_seconds, stale, power, voltage_in, voltage_out, current_in,
                                 current_out, temperature, duty_cycle, rssi, relative_power}]}]
    }

Grouping: optimizers labelled with a string (`recorder nodes label --string`) are grouped by
it; the others by gateway (`name` null, `gateway` set). `relative_power` is the optimizer's power
as a share of the best fresh optimizer in its group, so a lagging panel stands out whatever the
weather; it is null for stale readings and when nothing in the group produces. Every optimizer
is listed, including those still waiting for a barcode (`identity` "held"), which /metrics leaves
out until InfluxDB shows them.

Nothing secret: only chosen fields are copied from the health snapshot, the InfluxDB URL loses
any user:password and query, and free text passes through `redact`.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from recorder.config import redact
from recorder.live.latest import HELD, UNRESOLVED, OptimizerNow, fresh_total
from recorder.live.snapshot import LiveSnapshot

COUNTERS = (
    "bytes",
    "frames",
    "checksum_errors",
    "noise_bytes",
    "unknown_frame_types",
    "unknown_packet_types",
    "power_reports",
    "duplicate_reports",
    "readings",
    "source_reconnects",
)


def status_document(snapshot: LiveSnapshot, version: str) -> dict[str, Any]:
    latest = snapshot.latest
    optimizers = latest.optimizers
    groups: dict[tuple[int, str, int], list[OptimizerNow]] = {}
    for optimizer in optimizers:
        if optimizer.string:
            key = (0, optimizer.string, 0)
        else:
            key = (1, "", optimizer.reading.gateway_id)
        groups.setdefault(key, []).append(optimizer)
    strings = []
    for (_kind, name, gateway), members in sorted(groups.items(), key=lambda item: _group_order(item[0])):
        best = max((o.reading.power for o in members if not o.stale), default=0.0)
        members.sort(key=lambda o: (_natural(o.name or ""), _natural(o.reading.barcode or "~"), o.key))
        strings.append(
            {
                "name": name or None,
                "gateway": None if name else gateway,
                "power": round(fresh_total(members)[0], 1),
                "best_power": round(best, 1),
                "optimizers": [_optimizer(o, best) for o in members],
            }
        )
    fresh_power, reporting = fresh_total(optimizers)
    return {
        "now": latest.now.isoformat() if latest.now is not None else None,
        "stale_after_seconds": latest.stale_after.total_seconds(),
        "recorder": _recorder(snapshot.health, latest.now, version),
        "totals": {
            "optimizers": len(optimizers),
            "reporting": reporting,
            "stale": sum(1 for o in optimizers if o.stale),
            "held": sum(1 for o in optimizers if o.identity == HELD),
            "unresolved": sum(1 for o in optimizers if o.identity == UNRESOLVED),
            "power": round(fresh_power, 1),
        },
        "strings": strings,
    }


def _optimizer(optimizer: OptimizerNow, best: float) -> dict[str, Any]:
    reading = optimizer.reading
    relative = round(reading.power / best, 3) if best > 0 and not optimizer.stale else None
    return {
        "barcode": reading.barcode,
        "gateway": reading.gateway_id,
        "node_id": reading.node_id,
        "name": optimizer.name,
        "string": optimizer.string,
        "identity": optimizer.identity,
        "measured_at": reading.measured_at.isoformat(),
        "age_seconds": round(optimizer.age, 1),
        "stale": optimizer.stale,
        "power": round(reading.power, 2),
        "voltage_in": round(reading.voltage_in, 2),
        "voltage_out": round(reading.voltage_out, 2),
        "current_in": round(reading.current_in, 3),
        "current_out": round(reading.current_out, 3) if reading.current_out is not None else None,
        "temperature": round(reading.temperature, 1),
        "duty_cycle": round(reading.duty_cycle, 3),
        "rssi": reading.rssi,
        "relative_power": relative,
    }


def _recorder(health: Mapping[str, Any], now: datetime | None, version: str) -> dict[str, Any]:
    last_data = health.get("last_data_at")
    age = None
    if last_data:
        last = datetime.fromisoformat(str(last_data))
        # Before the first reading the view has no clock: the wall clock is the best we have.
        reference = now if now is not None else datetime.now(last.tzinfo)
        age = round(max((reference - last).total_seconds(), 0.0), 1)
    latency = None
    if health.get("latency_p50_ms") is not None:
        latency = {"p50": health.get("latency_p50_ms"), "p99": health.get("latency_p99_ms")}
    return {
        "version": version,
        "source": _text(health.get("source")),
        "source_state": health.get("source_state"),
        "source_error": _text(health.get("last_error")),
        "last_data_at": last_data,
        "last_data_age_seconds": age,
        "influxdb": {
            "url": public_url(str(health.get("influx_url") or "")),
            "bucket": health.get("influx_bucket"),
            "reachable": health.get("influx_reachable"),
            "points_written": health.get("points_written"),
            "write_errors": health.get("write_errors"),
            "last_error": _text(health.get("last_write_error")),
        },
        "outbox": {
            "ready": health.get("outbox_ready"),
            "held": health.get("outbox_held"),
            "parked": health.get("points_parked"),
        },
        "unresolved_nodes": health.get("unresolved_nodes"),
        "decode_stalled": bool(health.get("decode_stalled")),
        "disk": {
            "full": bool(health.get("disk_full")),
            "path": health.get("disk_path"),
            "free_bytes": health.get("disk_free_bytes"),
            "full_since": health.get("disk_full_since"),
            "failed_writes": health.get("disk_full_events"),
            "readings_in_memory": health.get("readings_in_memory"),
            "readings_dropped": health.get("readings_dropped_disk_full"),
            "archive_paused": bool(health.get("archive_paused")),
            "archive_files_removed": health.get("archive_removed_for_space"),
        },
        "counters": {name: health.get(name) for name in COUNTERS},
        "latency_ms": latency,
    }


def public_url(url: str) -> str:
    """`url` without user:password, query or fragment (what is safe to show)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return redact(urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", "")))


def _text(value: Any) -> str | None:
    return redact(str(value)) if value is not None else None


def _group_order(key: tuple[int, str, int]) -> tuple[int, list[Any], int]:
    kind, name, gateway = key
    return (kind, _natural(name), gateway)


def _natural(text: str) -> list[Any]:
    """Sort key that puts "A2" before "A10"."""
    parts = re.split(r"(\d+)", text)
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in parts]
