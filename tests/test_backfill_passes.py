"""The backfill's passes and its read-ahead child change nothing in what it writes."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from recorder.archive import Archive
from recorder.backfill import Backfill, BackfillOptions, held
from recorder.config import load_settings
from recorder.sim.bus import BusSimulation
from recorder.sim.config import SimulationConfig
from recorder.storage.state import StateStore


class Collect:
    """A line writer that keeps what it is given."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, lines: list[str]) -> None:
        self.lines.extend(lines)

    def close(self) -> None:
        pass


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


@pytest.mark.parametrize("two_pass", [False, True], ids=["one pass", "two passes"])
def test_reading_ahead_in_a_child_process_changes_nothing(tmp_path: Path, two_pass: bool) -> None:
    """Same lines, readings and skipped files (with the same reasons) either way, including a
    file corrupt in the middle, one cut short while being written, and a raw dump."""
    config = SimulationConfig(duration=timedelta(hours=3), nodes=15, seed=53, noise=0.01)
    inputs = tmp_path / "inputs"
    records = []
    archive = Archive(inputs, retention_days=0)
    for data, seconds in BusSimulation(config).run():
        at = config.start + timedelta(seconds=seconds)
        archive.write(data, at)
        records.append(data)
    archive.close()
    files = sorted(inputs.rglob("*.cap.gz"))
    middle = bytearray(files[1].read_bytes())
    middle[len(middle) // 2 : len(middle) // 2 + 40] = b"\x55" * 40
    files[1].write_bytes(bytes(middle))
    files[2].write_bytes(files[2].read_bytes()[:-5000])
    (inputs / "dump.bin").write_bytes(b"".join(records[: len(records) // 4]))

    def backfill(read_ahead: bool) -> tuple[list[str], Any]:
        writer = Collect()
        summary = Backfill(
            load_settings({}, environ={}),
            StateStore.open(tmp_path / f"state-{read_ahead}.db"),
            writer,
            BackfillOptions(
                paths=[inputs],
                read_ahead=read_ahead,
                two_pass=two_pass,
                raw_start=datetime.fromisoformat("2025-06-21T08:00:00+00:00"),
                batch_size=500,
            ),
        ).run()
        return writer.lines, summary

    here, here_summary = backfill(False)
    child, child_summary = backfill(True)
    assert len(here) > 5000
    assert child == here
    assert child_summary.readings == here_summary.readings
    assert [(path, reason) for path, reason in child_summary.skipped] == here_summary.skipped
    assert [path for path, _ in here_summary.skipped] == [files[1]]
    assert "offset" in here_summary.skipped[0][1]


@pytest.mark.parametrize("on_unresolved", ["write", "drop"])
def test_readings_never_identified_wait_on_disk_then_go_out_without_a_barcode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_unresolved: str
) -> None:
    monkeypatch.setattr(held, "MEMORY_LIMIT", 500)
    spilled: list[int] = []
    real_drain = held.HeldReadings.drain

    def drain(self: held.HeldReadings, batch_size: int = 20_000) -> Any:
        spilled.append(self.spilled)
        return real_drain(self, batch_size)

    monkeypatch.setattr(held.HeldReadings, "drain", drain)
    config = SimulationConfig(duration=timedelta(hours=2), nodes=10, seed=59, identity=False)
    archive = Archive(tmp_path / "archive", retention_days=0)
    for data, seconds in BusSimulation(config).run():
        archive.write(data, config.start + timedelta(seconds=seconds))
    archive.close()
    writer = Collect()
    summary = Backfill(
        load_settings({}, environ={}),
        StateStore.open(tmp_path / "state.db"),
        writer,
        BackfillOptions(
            paths=[tmp_path / "archive"], on_unresolved=on_unresolved, scratch_directory=tmp_path
        ),
    ).run()
    assert summary.readings > 3000 and summary.unresolved == summary.readings
    assert spilled[0] > summary.readings - 500  # all but the last few hundred waited on disk
    assert not any(path.name.startswith("recorder-held-") for path in tmp_path.iterdir())  # cleaned up
    if on_unresolved == "write":
        points = [line for line in writer.lines if line.startswith("tigo_optimizer,")]
        assert len(points) == summary.readings and summary.dropped_unresolved == 0
        assert not any("barcode=" in line for line in writer.lines)
        assert len(set(points)) == len(points)
        # Written without a barcode, they count in daily energy under their node (as `run` does
        # with readings whose identity hold expired): one tigo_energy point per node.
        energy = [line for line in writer.lines if line.startswith("tigo_energy,")]
        assert len(energy) == summary.energy_points == config.nodes
        assert len(points) + len(energy) == len(writer.lines)
    else:  # dropped readings never become ready: no energy either
        assert writer.lines == [] and summary.dropped_unresolved == summary.readings
        assert summary.energy_points == 0
