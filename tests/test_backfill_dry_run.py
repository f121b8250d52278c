"""`recorder backfill --dry-run` (and `run --dry-run`) touch nothing: no state database is
created, migrated or written, and no file appears beside it."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from recorder.archive import Archive
from recorder.sim.bus import BusSimulation
from recorder.sim.config import SimulationConfig
from recorder.storage.db import current_revision, downgrade, open_database
from tests.conftest import ROOT, run_recorder

CONFIG = SimulationConfig(
    start=datetime.fromisoformat("2025-06-21T10:00:00+00:00"),
    duration=timedelta(minutes=5),
    nodes=6,
    seed=47,
    controller_restart=False,  # no identity on the bus: barcodes must come from the database
)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("archive")
    writer = Archive(directory, retention_days=0)
    for data, seconds in BusSimulation(CONFIG).run():
        writer.write(data, CONFIG.start + timedelta(seconds=seconds))
    writer.close()
    return directory


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file's bytes; only its name for a `-shm` file, SQLite's shared-memory index of the
    WAL, which holds no data and which every reader (a read-only one too) may rebuild."""
    return {
        path.name: b"" if path.name.endswith("-shm") else path.read_bytes()
        for path in sorted(directory.iterdir())
    }


def dry_run(archive: Path, db: Path, command: str = "backfill") -> str:
    if command == "backfill":
        arguments = ["backfill", str(archive), "--dry-run", "--db", str(db)]
    else:
        capture = next(archive.rglob("*.cap.gz"))
        arguments = ["run", "--source", f"capture:{capture}", "--dry-run", "--exit-at-end", "--db", str(db)]
    return run_recorder(*arguments, env={"INFLUX_URL": "http://127.0.0.1:9"}).stdout


@pytest.mark.parametrize("command", ["backfill", "run"])
def test_an_older_database_is_neither_migrated_nor_written(
    archive: Path, tmp_path: Path, command: str
) -> None:
    db = tmp_path / "state" / "state.db"
    db.parent.mkdir()
    engine = open_database(db)
    downgrade(engine, "0001")
    engine.dispose()
    before = snapshot(db.parent)
    assert list(before) == ["state.db"]
    dry_run(archive, db, command)
    assert snapshot(db.parent) == before  # byte for byte, and nothing beside it
    engine = open_database(db, migrate=False)
    assert current_revision(engine) == "0001"
    engine.dispose()


# A `recorder run` killed while its last writes were still in the WAL: the mappings of every node
# are committed there and not yet in the main file.
_KILLED_WRITER = """
import os, sys
from datetime import datetime
from pathlib import Path
from recorder.sim.bus import BusSimulation
from recorder.sim.config import SimulationConfig
from recorder.storage.state import ImportedMapping, StateStore
from recorder.protocol.barcode import parse_long_address

truth = []
config = SimulationConfig(nodes=6, seed=47)
for _ in BusSimulation(config).run(truth.append):
    break
at = datetime.fromisoformat("2025-06-21T00:00:00+00:00")
mappings = [
    ImportedMapping(r["gateway_id"], r["node_id"], parse_long_address(r["long_address"]), at)
    for r in truth if r["type"] == "mapping"
]
store = StateStore.open(Path(sys.argv[1]))
store.import_records(mappings, [], [], at)
os._exit(0)  # no close: no checkpoint
"""


@pytest.mark.parametrize("command", ["backfill", "run"])
def test_a_database_with_changes_in_its_wal_is_read_but_not_written(
    archive: Path, tmp_path: Path, command: str
) -> None:
    db = tmp_path / "state.db"
    subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(db)], check=True, cwd=ROOT)
    wal = Path(f"{db}-wal")
    assert wal.stat().st_size > 0
    before = snapshot(tmp_path)
    output = dry_run(archive, db, command)
    assert snapshot(tmp_path) == before
    # ...and the dry run saw what the WAL holds: every reading got its barcode from there.
    if command == "backfill":
        assert "0 readings without a barcode" in output and "points would be written" in output
    else:
        lines = [line for line in output.splitlines() if line.startswith("tigo_optimizer")]
        assert lines and all(",barcode=" in line for line in lines)


def test_no_database_is_created(archive: Path, tmp_path: Path) -> None:
    db = tmp_path / "missing" / "state.db"
    assert "points would be written" in dry_run(archive, db)
    assert not db.parent.exists()
