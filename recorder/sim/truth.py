"""Compare what a decoder produced with the simulator's ground truth.

Used by the tests and the benchmarks. A decoded reading matches a true report when gateway,
node and slot counter agree and the measurement times are within `tolerance`; values must then
be identical (both sides hold the same quantised numbers).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from recorder.timestamps import to_millis

VALUE_FIELDS = ("voltage_in", "voltage_out", "current_in", "duty_cycle", "temperature", "rssi")


@dataclass
class Comparison:
    expected: int = 0  # reports the optimizers produced
    destroyed: int = 0  # of which no intact copy reached the listener
    decoded: int = 0  # readings the decoder produced
    matched: int = 0
    missing: list[dict[str, Any]] = field(default_factory=list)  # not destroyed, not decoded
    extra: list[dict[str, Any]] = field(default_factory=list)  # decoded, no true report
    duplicates: int = 0
    value_mismatches: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    barcode_mismatches: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    destroyed_but_decoded: int = 0
    max_time_error: float = 0.0

    @property
    def exact(self) -> bool:
        return not (
            self.missing
            or self.extra
            or self.duplicates
            or self.value_mismatches
            or self.destroyed_but_decoded
        )

    def record(
        self,
        best: dict[str, Any] | None,
        line: dict[str, Any],
        error: float | None,
        tolerance: float,
        *,
        check_barcodes: bool,
    ) -> None:
        """Account for one decoded line against its closest true report (`error` in seconds)."""
        if best is None or error is None or error > tolerance:
            self.extra.append(line)
            return
        if best["_seen"]:
            self.duplicates += 1
            return
        best["_seen"] = True
        self.matched += 1
        self.max_time_error = max(self.max_time_error, error)
        if best["destroyed"]:
            self.destroyed_but_decoded += 1
        if any(best[name] != line[name] for name in VALUE_FIELDS):
            self.value_mismatches.append((best, line))
        if check_barcodes and best["barcode"] != line.get("barcode"):
            self.barcode_mismatches.append((best, line))

    def collect_missing(self, groups: Iterable[list[dict[str, Any]]]) -> None:
        """True reports never matched and not destroyed: the decoder missed them."""
        for group in groups:
            self.missing.extend(record for record in group if not record["_seen"] and not record["destroyed"])

    def summary(self) -> str:
        return (
            f"expected {self.expected} (destroyed {self.destroyed}), decoded {self.decoded}, "
            f"matched {self.matched}, missing {len(self.missing)}, extra {len(self.extra)}, "
            f"duplicates {self.duplicates}, value mismatches {len(self.value_mismatches)}, "
            f"barcode mismatches {len(self.barcode_mismatches)}, max time error {self.max_time_error:.3f} s"
        )


def load_truth(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def power_reports(truth: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [record for record in truth if record["type"] == "power_report"]


def compare(
    truth: Iterable[dict[str, Any]],
    decoded: Iterable[dict[str, Any]],
    *,
    tolerance: timedelta = timedelta(seconds=1),
    check_barcodes: bool = False,
) -> Comparison:
    """`decoded`: dicts with gateway_id, node_id, slot_counter, measured_at (ISO or datetime),
    the value fields and optionally barcode (the `recorder observe` power_report lines)."""
    result = Comparison()
    candidates: dict[tuple[int, int, int], list[dict[str, Any]]] = {}
    reports = power_reports(truth)
    for record in reports:
        result.expected += 1
        result.destroyed += bool(record["destroyed"])
        key = (record["gateway_id"], record["node_id"], record["slot_counter"])
        candidates.setdefault(key, []).append({**record, "_at": _time(record["measured_at"]), "_seen": False})
    for line in decoded:
        result.decoded += 1
        at = _time(line["measured_at"])
        best: dict[str, Any] | None = None
        for candidate in candidates.get((line["gateway_id"], line["node_id"], line["slot_counter"]), ()):
            error = abs((candidate["_at"] - at).total_seconds())
            if error <= 60 and (best is None or error < abs((best["_at"] - at).total_seconds())):
                best = candidate
        error = abs((best["_at"] - at).total_seconds()) if best is not None else None
        result.record(best, line, error, tolerance.total_seconds(), check_barcodes=check_barcodes)
    result.collect_missing(candidates.values())
    return result


def _time(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def compare_points(
    truth: Iterable[dict[str, Any]],
    points: Iterable[dict[str, Any]],
    *,
    tolerance: timedelta = timedelta(seconds=1),
) -> Comparison:
    """Match InfluxDB points (rows of `SELECT * FROM tigo_optimizer`, time in epoch ms) to the
    truth by gateway, node and nearest measurement time; values and barcodes must agree.

    Points carry the gateway's barcode (or its ID) in the `gateway` tag; the truth's gateway
    records translate it back.
    """
    from bisect import bisect_left

    records = list(truth)
    gateway_ids = {r["barcode"]: r["gateway_id"] for r in records if r["type"] == "gateway"}
    result = Comparison()
    by_node: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for record in power_reports(records):
        result.expected += 1
        result.destroyed += bool(record["destroyed"])
        at = _time(record["measured_at"])
        by_node.setdefault((record["gateway_id"], record["node_id"]), []).append(
            {**record, "_ms": to_millis(at), "_seen": False}
        )
    for group in by_node.values():
        group.sort(key=lambda record: record["_ms"])
    for point in points:
        result.decoded += 1
        gateway = point["gateway"]
        gateway_id = gateway_ids.get(gateway, int(gateway) if str(gateway).isdigit() else -1)
        group = by_node.get((gateway_id, int(point["node_id"])), [])
        times = [record["_ms"] for record in group]
        index = bisect_left(times, point["time"])
        near = [group[i] for i in (index - 1, index) if 0 <= i < len(group)]
        best = min(near, key=lambda record: abs(record["_ms"] - point["time"]), default=None)
        error = abs(best["_ms"] - point["time"]) / 1000 if best is not None else None
        result.record(best, point, error, tolerance.total_seconds(), check_barcodes=True)
    result.collect_missing(by_node.values())
    return result
