"""`raw:FILE.gz` works wherever a raw dump does, timed by its uncompressed length."""

from __future__ import annotations

import gzip
import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from recorder.backfill import Backfill, BackfillOptions
from recorder.config import load_settings
from recorder.sim.bus import BusSimulation
from recorder.sim.config import SimulationConfig
from recorder.storage.state import StateStore
from tests.conftest import run_recorder
from tests.test_backfill_passes import Collect

END = datetime.fromisoformat("2025-06-21T10:10:00+00:00")


@pytest.fixture(scope="module")
def dumps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Ten simulated minutes as a plain raw dump and as a two-member gzip of the same bytes,
    both last written at END."""
    directory = tmp_path_factory.mktemp("dumps")
    config = SimulationConfig(
        start=datetime.fromisoformat("2025-06-21T10:00:00+00:00"), duration=timedelta(minutes=10), nodes=10
    )
    content = b"".join(data for data, _seconds in BusSimulation(config).run())
    plain, compressed = directory / "bus.bin", directory / "bus.bin.gz"
    plain.write_bytes(content)
    half = len(content) // 2
    compressed.write_bytes(gzip.compress(content[:half]) + gzip.compress(content[half:]))
    assert compressed.stat().st_size < len(content) / 2  # so a compressed-size time base would show
    for path in (plain, compressed):
        os.utime(path, (END.timestamp(), END.timestamp()))
    return plain, compressed


def test_observe_and_peek(dumps: tuple[Path, Path]) -> None:
    plain, compressed = dumps
    expected = run_recorder("observe", "--source", f"raw:{plain}").stdout
    assert expected.count('"power_report"') > 200
    assert run_recorder("observe", "--source", f"raw:{compressed}").stdout == expected
    frames = ("peek", "frames", "--limit", "40", "--source")
    assert run_recorder(*frames, f"raw:{compressed}").stdout == run_recorder(*frames, f"raw:{plain}").stdout


def test_run(dumps: tuple[Path, Path], tmp_path: Path) -> None:
    def points(path: Path) -> list[str]:
        completed = run_recorder(
            "run", "--source", f"raw:{path}", "--db", str(tmp_path / "state.db"), "--dry-run", "--exit-at-end"
        )
        return [line for line in completed.stdout.splitlines() if line.startswith("tigo_optimizer")]

    expected = points(dumps[0])
    assert len(expected) > 200
    assert points(dumps[1]) == expected


def test_backfill(dumps: tuple[Path, Path], tmp_path: Path) -> None:
    def lines(path: Path, name: str) -> list[str]:
        writer = Collect()
        store = StateStore.open(tmp_path / f"{name}.db")
        try:
            Backfill(load_settings({}, environ={}), store, writer, BackfillOptions(paths=[path])).run()
        finally:
            store.close()
        return sorted(writer.lines)

    expected = lines(dumps[0], "plain")
    assert len(expected) > 200
    assert lines(dumps[1], "compressed") == expected
