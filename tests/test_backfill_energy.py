"""A backfill writes exactly the points, daily energy included, that the canonical pipeline makes
of the same bytes, as `recorder run` would (issue 14's one path, with energy per panel).

The canonical model here is `run`'s rules written out plainly: every reading from the
`DecodePipeline` (the one placement step) is ready at once when its node is known, waits (the
outbox's hold) until its mapping is learned otherwise, and what never resolves is written
without a barcode at the end; each reading is integrated into daily energy when it becomes
ready (`Sample.of`, as `run`'s outbox and in-flight set announce it to the energy keeper). The
backfill must write the same `tigo_optimizer` lines and the same `tigo_energy` lines, in one
pass and in two, in this process and with the read-ahead child, and count the same node
activity.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from recorder.archive import Archive
from recorder.backfill import Backfill, BackfillOptions
from recorder.config import load_settings
from recorder.energy import DEFAULT_MAX_GAP, ReplayEnergy, Sample
from recorder.observer import MappingLearned
from recorder.pipeline import DecodePipeline
from recorder.reading import LONG_ADDRESS, MEASURED_MS, Activity, Reading, count_activity, with_address
from recorder.sim.bus import BusSimulation
from recorder.sim.config import SimulationConfig
from recorder.sinks.points import PointFormatter, energy_line, point_identity
from recorder.storage.state import StateStore
from recorder.timestamps import to_millis
from tests.test_backfill_passes import Collect


def canonical_lines(records: list[tuple[bytes, datetime]]) -> tuple[list[str], Activity]:
    """What `recorder run` writes of `records` (module docstring), and the node activity it
    counts (every reading the pipeline makes)."""
    pipeline = DecodePipeline()
    identities = pipeline.observer.identities
    formatter = PointFormatter(lambda gateway, node, address: point_identity(gateway, node, address, {}))
    energy = ReplayEnergy(None, DEFAULT_MAX_GAP)
    lines: list[str] = []
    held: dict[tuple[int, int], list[Reading]] = {}
    activity: Activity = {}

    def ready(readings: list[Reading]) -> None:
        lines.extend(formatter.lines(readings))
        energy.feed([Sample.of(reading) for reading in readings])

    for data, at in records:
        decoded = pipeline.feed(data, at)
        count_activity(activity, decoded.readings)
        for reading in decoded.readings:
            if reading[LONG_ADDRESS] is None:
                held.setdefault((reading[0], reading[1]), []).append(reading)
            else:
                ready([reading])
        for output in decoded.learned:
            if not isinstance(output, MappingLearned):
                continue
            key = (output.gateway_id, output.node_id)
            waiting, still = held.pop(key, []), []
            for reading in waiting:
                address = identities.resolve(key, reading[MEASURED_MS])
                if address is None:
                    still.append(reading)
                else:
                    ready([with_address(reading, address)])
            if still:
                held[key] = still
    for waiting in held.values():
        ready(waiting)
    for totals in energy.days():
        identity = point_identity(*totals.key, {})
        lines.append(energy_line(identity, totals.day_start_ms, totals.energy_wh, totals.uncovered_seconds))
    return lines, activity


@pytest.mark.parametrize(
    "changes",
    [
        {"noise": 0.02},
        {"firmware": "4x", "noise": 0.01, "gateways": 2},
        {"reassign": True, "start": datetime.fromisoformat("2025-06-21T10:00:00+00:00")},
        {
            "reassign": True,
            "aliases_last": True,
            "quiet_replacement": True,
            "start": datetime.fromisoformat("2025-06-21T10:00:00+00:00"),
        },  # the replacement is only in a table paged aliases last
        {
            "controller_restart": False,
            "start": datetime.fromisoformat("2025-06-21T03:00:00+00:00"),
        },  # sunrise: readings wait for identity
    ],
    ids=["noise", "4x two gateways", "reassignment", "alias paging", "identity at sunrise"],
)
@pytest.mark.parametrize("two_pass", [False, True], ids=["one pass", "two passes"])
def test_backfill_writes_the_canonical_points_and_daily_energy(
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
    expected, activity = canonical_lines(records)
    writer = Collect()
    store = StateStore.open(tmp_path / "state.db")
    backfill = Backfill(
        load_settings({}, environ={}),
        store,
        writer,
        # The two-pass runs read ahead in a child process, the one-pass runs in this process.
        BackfillOptions(
            paths=[tmp_path / "archive"], two_pass=two_pass, batch_size=1000, read_ahead=two_pass
        ),
    )
    summary = backfill.run()
    assert backfill.passes == (2 if two_pass else 1)
    assert len(expected) > 1000
    energy = [line for line in expected if line.startswith("tigo_energy,")]
    assert len(energy) >= config.nodes
    assert sum(" energy_wh=0.0," not in line for line in energy) >= config.nodes  # the sun is up
    assert sorted(writer.lines) == sorted(expected)  # the readings' points and the daily energy
    assert summary.energy_points == len(energy)
    # nodes list's LAST REPORT and report counts, as `recorder run` would have recorded them
    assert backfill.activity == activity
    stored = {
        (row.gateway_id, row.node_id): (to_millis(row.last_report_at), row.report_count)
        for row in store.list_nodes()
        if row.last_report_at is not None
    }
    assert stored == {key: (last, count) for key, (_first, last, count) in activity.items()}
