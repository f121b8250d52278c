"""One configuration for every command, and commands that only look never create anything (issue 13)."""

from __future__ import annotations

import json
import shlex
import sqlite3
from pathlib import Path

import pytest

from recorder.config import SYSTEM_CONFIG_FILE, Settings, load_settings, locate_config_file, setting_names
from tests.conftest import ROOT, run_recorder
from tests.influx import InfluxDatabase

SIM = "sim:?nodes=12&duration=20m&start=2025-06-21T10:00:00%2B00:00&seed=61"
# The same array later, without the controller's start-up traffic: no identity on the bus at all.
LATER = "sim:?nodes=12&duration=5m&start=2025-06-21T12:00:00%2B00:00&seed=61&controller_restart=0"


def unit_command(config: Path) -> list[str]:
    """The unit's ExecStart, with this checkout's recorder and the test's configuration file."""
    text = (ROOT / "deploy" / "recorder.service").read_text()
    assert not [line for line in text.splitlines() if line.startswith("Environment=RECORDER_")]
    (line,) = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    words = shlex.split(line.removeprefix("ExecStart="))
    assert words[0] == "/opt/recorder/venv/bin/recorder"
    return [str(config) if word == "/etc/recorder/recorder.toml" else word for word in words[1:]]


def write_config(path: Path, db: Path, influx: InfluxDatabase) -> Path:
    path.write_text(
        f'source = "{SIM}"\ndb = "{db}"\narchive_days = 0\n'
        f'[influx]\nurl = "{influx.url}"\ntoken = "{influx.token}"\norg = "-"\nbucket = "{influx.bucket}"\n'
    )
    return path


@pytest.mark.influx
@pytest.mark.slow
def test_a_config_file_naming_the_database_is_honoured_by_every_command(
    tmp_path: Path, influx_database: InfluxDatabase
) -> None:
    db = tmp_path / "named-in-the-file.db"
    config = write_config(tmp_path / "recorder.toml", db, influx_database)
    elsewhere = tmp_path / "elsewhere"  # the working directory: no default database may appear
    elsewhere.mkdir()
    env = {"HOME": str(elsewhere), "XDG_DATA_HOME": str(elsewhere / "data"), "RECORDER_DB": ""}

    def recorder(*arguments: str, **kwargs: object) -> str:
        return run_recorder(*arguments, "--config", str(config), cwd=elsewhere, env=env, **kwargs).stdout

    # `recorder run` exactly as the unit starts it, but pointed at this file.
    started = run_recorder(*unit_command(config), cwd=elsewhere, env=env)
    first_line = started.stderr.splitlines()[0]
    assert f"state database {db} (`db` in {config}); configuration {config} (--config)" in first_line
    assert f"created a new state database at {db}" in started.stderr
    assert db.exists() and not (elsewhere / "data").exists()

    status = recorder("status")
    assert f"state database   {db} (`db` in {config})" in status
    assert f"configuration    {config} (--config)" in status
    rows = json.loads(recorder("nodes", "list", "--json"))
    assert len(rows) == 12 and all(row["barcode"] for row in rows)
    barcode = rows[0]["barcode"]
    assert barcode in recorder("nodes", "history", barcode)
    assert "name=roof string=B" in recorder("nodes", "label", barcode, "--name", "roof", "--string", "B")
    exported = tmp_path / "nodes.json"
    recorder("nodes", "export", "--out", str(exported))
    assert any(o["name"] == "roof" for o in json.loads(exported.read_text())["optimizers"])
    assert "12 mappings (0 new or changed)" in recorder("nodes", "import", str(exported))
    assert f"{db} (`db` in {config}): schema at revision" in recorder("db", "current")
    assert "(newest)" in recorder("db", "upgrade")

    # The environment's RECORDER_CONFIG is the same file for a command without --config.
    listed = run_recorder("nodes", "list", cwd=elsewhere, env={**env, "RECORDER_CONFIG": str(config)})
    assert "12 nodes, 12 with a barcode" in listed.stdout

    # observe: the configured database is read (barcodes), never written.
    before = db.read_bytes()
    observed = [json.loads(line) for line in recorder("observe", "--source", LATER).splitlines()]
    reports = [line for line in observed if line["type"] == "power_report"]
    assert reports and all(report["barcode"] for report in reports)
    assert db.read_bytes() == before

    # backfill writes through the same file's database and InfluxDB, and status then says so.
    capture = tmp_path / "later.cap.gz"
    run_recorder("simulate", "--nodes", "12", "--duration", "5m", "--seed", "61", "--out", str(capture))
    backfilled = recorder("backfill", str(capture))
    assert "1/1 files" in backfilled and " 0 points written" not in backfilled
    assert f"points written to {influx_database.url} ({influx_database.bucket})" in recorder("status")
    assert not (elsewhere / "data").exists()


def test_the_rule_for_the_configuration_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--config, else RECORDER_CONFIG, else the system file when it exists, else the user's."""
    system = tmp_path / "etc" / "recorder.toml"
    user_home = tmp_path / "home"
    user_file = user_home / ".config" / "recorder" / "recorder.toml"
    monkeypatch.setattr("recorder.config.SYSTEM_CONFIG_FILE", system)
    environ = {"HOME": str(user_home)}
    assert locate_config_file(None, environ).path is None
    user_file.parent.mkdir(parents=True)
    user_file.write_text('db = "/from/user.db"\n')
    assert locate_config_file(None, environ).path == user_file
    assert load_settings({}, environ=environ).database.how == f"`db` in {user_file}"
    system.parent.mkdir()
    system.write_text('db = "/from/system.db"\n')
    assert locate_config_file(None, environ).path == system
    chosen = load_settings({}, environ=environ)
    assert chosen.database_path == Path("/from/system.db")
    assert str(chosen.config_file) == f"{system} (the system configuration file)"
    assert locate_config_file(None, {**environ, "RECORDER_CONFIG": str(user_file)}).how == "RECORDER_CONFIG"
    assert locate_config_file(tmp_path / "x.toml", {"RECORDER_CONFIG": str(user_file)}).how == "--config"
    xdg = tmp_path / "xdg"
    (xdg / "recorder").mkdir(parents=True)
    (xdg / "recorder" / "recorder.toml").write_text("")
    system.unlink()
    assert locate_config_file(None, {**environ, "XDG_CONFIG_HOME": str(xdg)}).how == "your configuration file"
    # Flags beat the environment beat the file, for the database as for everything else.
    assert (
        load_settings({"db": "/flag.db"}, environ={**environ, "RECORDER_DB": "/env.db"}).database.how
        == "--db"
    )
    assert load_settings({}, environ={**environ, "RECORDER_DB": "/env.db"}).database.how == "RECORDER_DB"
    assert Path("/etc/recorder/recorder.toml") == SYSTEM_CONFIG_FILE


def test_the_installed_template_names_every_setting() -> None:
    template = (ROOT / "deploy" / "recorder.toml").read_text()
    keys = set()
    table = ""
    for line in template.splitlines():
        text = line.strip().lstrip("#").strip()
        if text.startswith("[") and text.endswith("]"):
            table = text.strip("[]")
        elif "=" in text and not line.strip().startswith("# "):
            key = text.split("=", 1)[0].strip()
            keys.add(f"{table}_{key}" if table else key)
    assert keys == set(setting_names())
    settings = load_settings({}, ROOT / "deploy" / "recorder.toml", {})
    assert settings.database_path == Path("/var/lib/recorder/recorder.db") and settings == Settings(
        db=Path("/var/lib/recorder/recorder.db")
    )


READ_ONLY_COMMANDS = [
    ("status",),
    ("nodes", "list"),
    ("nodes", "history", "4-9A57A2L"),
    ("nodes", "export"),
    ("db", "current"),
]


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=" ".join)
def test_a_read_only_command_on_a_missing_database_exits_2_and_creates_nothing(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    missing = tmp_path / "not" / "there" / "recorder.db"
    completed = run_recorder(*command, "--db", str(missing), check=False, cwd=tmp_path)
    assert completed.returncode == 2
    (line,) = completed.stderr.strip().splitlines()
    assert f"no state database at {missing} (--db)" in line and "recorder run" in line
    assert not (tmp_path / "not").exists()
    # Chosen by a configuration file: the message says so.
    config = tmp_path / "c.toml"
    config.write_text(f'db = "{tmp_path / "typo.db"}"\n')
    named = run_recorder(*command, "--config", str(config), check=False, cwd=tmp_path)
    assert named.returncode == 2 and f"(`db` in {config})" in named.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["c.toml"]


def test_reading_a_database_while_no_writer_is_connected_leaves_no_file_behind(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    run_recorder("db", "upgrade", "--db", str(db))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["state.db"]
    for command in READ_ONLY_COMMANDS[:2]:
        run_recorder(*command, "--db", str(db))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["state.db"]  # no -wal, no -shm


def test_a_corrupt_database_is_reported_as_such_and_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    db.write_bytes(b"this is not SQLite" * 100)
    completed = run_recorder("nodes", "list", "--db", str(db), check=False)
    assert completed.returncode == 2 and "is not a usable SQLite database" in completed.stderr
    assert db.read_bytes() == b"this is not SQLite" * 100


def test_an_older_schema_is_not_migrated_by_a_reader(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    run_recorder("db", "upgrade", "--db", str(db))
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0001'")
    completed = run_recorder("status", "--db", str(db), check=False)
    assert completed.returncode == 2 and "older than this recorder's" in completed.stderr
    assert "revision 0001" in run_recorder("db", "current", "--db", str(db)).stdout
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)
