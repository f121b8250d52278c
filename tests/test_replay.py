"""The backfill fast lane writes exactly the lines the canonical pipeline would (`recorder.replay`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from recorder.archive import Archive
from recorder.backfill import Backfill, BackfillOptions
from recorder.config import load_settings
from recorder.observer import MappingLearned, Reading
from recorder.pipeline import DecodePipeline
from recorder.sim.bus import BusSimulation
from recorder.sim.config import SimulationConfig
from recorder.sinks.points import PointIdentity, optimizer_line
from recorder.storage.state import StateStore


class Collect:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, lines: list[str]) -> None:
        self.lines.extend(lines)

    def close(self) -> None:
        pass


def canonical_lines(records: list[tuple[bytes, datetime]]) -> list[str]:
    """What `recorder run` writes: readings resolved when emitted, unresolved ones held (the
    outbox) until their mapping is learned, the rest written without a barcode at the end."""
    pipeline = DecodePipeline()
    lines: list[str] = []
    held: dict[tuple[int, int], list[Reading]] = {}

    def line(reading: Reading, barcode: str | None) -> str:
        return optimizer_line(
            PointIdentity(str(reading.gateway_id), reading.node_id, barcode),
            reading.report,
            reading.measured_at,
        )

    for data, at in records:
        _, outputs = pipeline.feed(data, at)
        for output in outputs:
            if isinstance(output, Reading):
                if output.barcode is None:
                    held.setdefault((output.gateway_id, output.node_id), []).append(output)
                else:
                    lines.append(line(output, output.barcode))
            elif isinstance(output, MappingLearned):
                for reading in held.pop((output.gateway_id, output.node_id), []):
                    lines.append(
                        line(
                            reading,
                            pipeline.observer.resolve(
                                reading.gateway_id, reading.node_id, reading.measured_at
                            )[1],
                        )
                    )
    for waiting in held.values():
        lines.extend(line(reading, None) for reading in waiting)
    return lines


@pytest.mark.parametrize(
    "changes",
    [
        {"noise": 0.02},
        {"firmware": "4x", "noise": 0.01, "gateways": 2},
        {"reassign": True, "start": datetime.fromisoformat("2025-06-21T10:00:00+00:00")},
        {
            "controller_restart": False,
            "start": datetime.fromisoformat("2025-06-21T03:00:00+00:00"),
        },  # sunrise
    ],
    ids=["noise", "4x two gateways", "reassignment", "identity at sunrise"],
)
@pytest.mark.parametrize("two_pass", [False, True], ids=["one pass", "two passes"])
def test_fast_lane_equals_the_canonical_pipeline(
    tmp_path: Path, changes: dict[str, Any], two_pass: bool
) -> None:
    config = SimulationConfig(duration=timedelta(hours=3), nodes=25, seed=41).with_changes(**changes)
    records = [
        (data, config.start + timedelta(seconds=seconds)) for data, seconds in BusSimulation(config).run()
    ]
    archive = Archive(tmp_path / "archive", retention_days=0)
    for data, at in records:
        archive.write(data, at)
    archive.close()
    expected = canonical_lines(records)
    writer = Collect()
    backfill = Backfill(
        load_settings({}, environ={}),
        StateStore.open(tmp_path / "state.db"),
        writer,
        BackfillOptions(paths=[tmp_path / "archive"], two_pass=two_pass, batch_size=1000),
    )
    backfill.run()
    assert backfill.passes == (2 if two_pass else 1)
    assert len(expected) > 1000
    assert sorted(writer.lines) == sorted(expected)


def test_a_database_knowing_later_history_forces_the_first_pass(tmp_path: Path) -> None:
    config = SimulationConfig(duration=timedelta(minutes=20), nodes=5, seed=43)
    archive = Archive(tmp_path / "archive", retention_days=0)
    for data, seconds in BusSimulation(config).run():
        archive.write(data, config.start + timedelta(seconds=seconds))
    archive.close()
    store = StateStore.open(tmp_path / "state.db")
    first = Backfill(
        load_settings({}, environ={}), store, Collect(), BackfillOptions(paths=[tmp_path / "archive"])
    )
    first.run()
    again = Backfill(
        load_settings({}, environ={}), store, Collect(), BackfillOptions(paths=[tmp_path / "archive"])
    )
    again.run()
    assert (first.passes, again.passes) == (1, 2)  # the second time, the database knows this period
