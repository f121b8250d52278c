from __future__ import annotations

import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, text

from recorder.errors import StateDatabaseError
from recorder.storage.db import (
    HEAD_REVISION,
    alembic_config,
    current_revision,
    downgrade,
    head_revision,
    open_database,
    upgrade,
)
from tests.conftest import ROOT, run_recorder


def test_the_head_revision_constant_matches_the_migrations() -> None:
    assert head_revision() == HEAD_REVISION


def test_empty_database_is_upgraded_to_head(tmp_path: Path) -> None:
    engine = open_database(tmp_path / "state.db")
    assert current_revision(engine) == head_revision() == "0003"
    tables = set(inspect(engine).get_table_names())
    assert {
        "gateways",
        "optimizers",
        "node_mappings",
        "node_activity",
        "outbox",
        "parked_points",
        "energy_series",
        "energy_hours",
    } <= tables
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() >= 5000


def test_models_and_migrations_do_not_drift(tmp_path: Path) -> None:
    engine = open_database(tmp_path / "state.db")
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.check(config)  # raises if autogenerate would produce any operation


def test_downgrade_and_upgrade_keep_rows(tmp_path: Path) -> None:
    engine = open_database(tmp_path / "state.db")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO optimizers (long_address, barcode, name, first_seen, last_seen) "
                "VALUES ('04:C0:5B:40:00:9A:57:A2', '4-9A57A2L', 'east 3', 0, 0)"
            )
        )
    downgrade(engine, "0001")
    assert "outbox" not in inspect(engine).get_table_names()
    upgrade(engine)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT name FROM optimizers")).scalars().all() == ["east 3"]
    assert current_revision(engine) == head_revision()


def test_a_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    open_database(path).dispose()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0099'")
    with pytest.raises(StateDatabaseError, match="revision 0099, newer than this recorder"):
        open_database(path)


def test_a_corrupt_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database" * 100)
    before = path.read_bytes()
    completed = run_recorder("nodes", "list", "--db", str(path), check=False)
    assert completed.returncode == 2
    assert "is not a usable SQLite database" in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1
    assert path.read_bytes() == before


def test_db_commands(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    missing_db = run_recorder("db", "current", "--db", str(path), check=False)
    assert missing_db.returncode == 2 and "no state database at" in missing_db.stderr
    assert not path.exists()  # looking never creates it
    assert "revision 0003 (newest)" in run_recorder("db", "upgrade", "--db", str(path)).stdout
    assert "revision 0003 (newest)" in run_recorder("db", "current", "--db", str(path)).stdout
    missing = run_recorder("db", "upgrade", "--db", str(tmp_path / "no" / "such" / "dir.db"), check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


@pytest.mark.slow
def test_migrations_ship_inside_the_installed_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("recorder-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "recorder/migrations/env.py" in names
    assert "recorder/migrations/versions/0001_identity.py" in names
    assert "recorder/migrations/versions/0002_outbox.py" in names
    assert "recorder/migrations/versions/0003_energy.py" in names
