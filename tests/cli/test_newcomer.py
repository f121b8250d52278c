"""The rough edges a newcomer hit (issue 13), each one as they met it: through the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_recorder
from tests.influx import InfluxDatabase

TWO_TAPS = "sim:?duration=3m&nodes=6&gateways=2&seed=23"


@pytest.fixture(scope="module")
def two_taps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state database that heard two TAPs enumerate (so their barcodes are known)."""
    path = tmp_path_factory.mktemp("two-taps") / "state.db"
    run_recorder("observe", "--db", str(path), "--source", TWO_TAPS)
    return path


def test_a_gateway_is_named_by_its_barcode_everywhere_and_found_by_either(two_taps: Path) -> None:
    db = ["--db", str(two_taps)]
    rows = json.loads(run_recorder("nodes", "list", *db, "--json").stdout)
    names = {row["gateway_id"]: row["gateway"] for row in rows}
    assert set(names) == {4609, 4610} and all(name.startswith("3-") for name in names.values())
    barcode = names[4610]
    table = run_recorder("nodes", "list", *db).stdout
    assert barcode in table and " 4610 " not in table
    node = rows[-1]
    history = run_recorder("nodes", "history", node["barcode"], *db).stdout
    assert barcode in history.splitlines()[1].split()
    assert json.loads(run_recorder("nodes", "history", node["barcode"], *db, "--json").stdout)[0][
        "gateway"
    ] == (barcode)
    by_barcode = run_recorder("nodes", "list", *db, "--json", "--gateway", barcode.lower()).stdout
    by_id = run_recorder("nodes", "list", *db, "--json", "--gateway", "4610").stdout
    assert by_barcode == by_id and {row["gateway_id"] for row in json.loads(by_id)} == {4610}
    assert run_recorder("nodes", "history", str(node["node_id"]), *db, "--gateway", barcode).stdout == (
        run_recorder("nodes", "history", str(node["node_id"]), *db, "--gateway", "4610").stdout
    )
    unknown = run_recorder("nodes", "list", *db, "--gateway", "3-2BE16Y", check=False)
    assert unknown.returncode == 2 and "no gateway with barcode 3-2BE16Y" in unknown.stderr
    assert barcode in unknown.stderr  # it lists the known ones
    garbage = run_recorder("nodes", "list", *db, "--gateway", "roof", check=False)
    assert garbage.returncode == 2 and "neither a gateway ID" in garbage.stderr
    assert len(garbage.stderr.strip().splitlines()) == 1


def test_labels_before_sunrise_apply_once_the_optimizer_is_heard(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"
    run_recorder("simulate", "--duration", "1m", "--nodes", "6", "--seed", "29", "--truth", str(truth))
    barcode = next(
        json.loads(line)["barcode"] for line in truth.read_text().splitlines() if '"mapping"' in line
    )
    db = tmp_path / "state.db"
    labelled = run_recorder("nodes", "label", barcode, "--db", str(db), "--name", "east 1", "--string", "A")
    assert f"{barcode}: name=east 1 string=A" in labelled.stdout
    assert "no nodes known yet" in run_recorder("nodes", "list", "--db", str(db)).stdout
    source = "sim:?duration=10m&nodes=6&seed=29"
    lines = run_recorder(
        "run", "--db", str(db), "--source", source, "--dry-run", "--archive-days", "0"
    ).stdout
    points = [line for line in lines.splitlines() if line.startswith("tigo_optimizer,")]
    mine = [line for line in points if f"barcode={barcode}," in line]
    assert mine and all(",name=east\\ 1," in line and ",string=A " in line for line in mine)
    assert not [line for line in points if "name=" in line and line not in mine]
    run_recorder("observe", "--db", str(db), "--source", source)
    row = next(
        r
        for r in json.loads(run_recorder("nodes", "list", "--db", str(db), "--json").stdout)
        if r["barcode"] == barcode
    )
    assert (row["name"], row["string"]) == ("east 1", "A")


@pytest.mark.parametrize(
    "arguments",
    [
        ("nodes", "export", "--out", "{dir}"),
        ("nodes", "export", "--out", "{dir}/missing/nodes.json"),
        ("simulate", "--duration", "1m", "--out", "{dir}"),
        ("simulate", "--duration", "1m", "--truth", "{dir}/missing/truth.jsonl"),
        ("simulate", "--duration", "1m", "--raw", "{dir}"),
    ],
    ids=[
        "export to a directory",
        "export to a missing directory",
        "capture to a directory",
        "truth to a missing directory",
        "raw to a directory",
    ],
)
def test_an_unusable_output_path_is_one_line_not_a_traceback(
    two_taps: Path, tmp_path: Path, arguments: tuple[str, ...]
) -> None:
    filled = [part.format(dir=tmp_path) for part in arguments]
    completed = run_recorder(*filled, *(["--db", str(two_taps)] if filled[0] == "nodes" else []), check=False)
    assert completed.returncode == 2
    (line,) = completed.stderr.strip().splitlines()
    assert "Traceback" not in completed.stderr and ("is a directory" in line or "does not exist" in line)
    assert sorted(path.name for path in tmp_path.iterdir()) == []


HELP = [
    ("run",),
    ("backfill",),
    ("status",),
    ("nodes", "list"),
    ("nodes", "history"),
    ("nodes", "label"),
    ("nodes", "import"),
    ("nodes", "export"),
    ("db", "current"),
    ("db", "upgrade"),
    ("observe",),
    ("peek",),
    ("simulate",),
    ("list-serial-ports",),
    (),
]


@pytest.mark.parametrize("command", HELP, ids=lambda c: " ".join(c) or "recorder")
def test_help_reads_like_a_unix_tool(command: tuple[str, ...]) -> None:
    text = run_recorder(*command, "--help").stdout
    assert "Usage: recorder" in text
    for python_type in ("<bool>", "<list[Path]>", "<str>", "<path>", "<int>", "<float>", "{PATH"):
        assert python_type not in text, python_type


def test_run_help_shows_where_each_setting_can_come_from() -> None:
    text = " ".join(run_recorder("run", "--help").stdout.split())
    for variables in (
        "RECORDER_SOURCE",
        "RECORDER_DB",
        "RECORDER_INFLUX_URL, INFLUX_URL, INFLUXDB_V2_URL",
        "RECORDER_INFLUX_TOKEN, INFLUX_TOKEN, INFLUXDB_V2_TOKEN",
        "RECORDER_BATCH_SIZE",
        "RECORDER_ARCHIVE_DAYS",
        "RECORDER_WATCHDOG_SECONDS",
    ):
        assert f"[env var: {variables};" in text, variables
    assert "Usage: recorder backfill [OPTIONS] PATH..." in run_recorder("backfill", "--help").stdout


@pytest.mark.influx
def test_after_a_backfill_status_says_what_it_knows_and_nodes_have_a_last_report(
    tmp_path: Path, influx_database: InfluxDatabase
) -> None:
    capture = tmp_path / "bus.cap.gz"
    run_recorder("simulate", "--duration", "10m", "--nodes", "6", "--seed", "31", "--out", str(capture))
    db = tmp_path / "state.db"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {
        "TMPDIR": str(scratch),
        "INFLUX_URL": influx_database.url,
        "INFLUX_TOKEN": influx_database.token,
        "INFLUX_BUCKET": influx_database.bucket,
    }
    dry = run_recorder("backfill", "--dry-run", "--db", str(db), str(capture), env=env)
    assert "points would be written" in dry.stdout and not db.exists()  # a dry run leaves no database
    run_recorder("backfill", "--db", str(db), str(capture), env=env)
    before = db.read_bytes()
    run_recorder("backfill", "--dry-run", "--db", str(db), str(capture), env=env)
    assert db.read_bytes() == before  # ...and does not touch an existing one
    assert os.listdir(scratch) == []  # no recorder-backfill-* folder left behind

    status = run_recorder("status", "--db", str(db))
    assert status.returncode == 0
    assert "has not saved its health" in status.stdout
    assert "1 files, " in status.stdout and f"points written to {influx_database.url}" in status.stdout
    assert "6 known, 6 with a barcode" in status.stdout and "last report measured 2025-06-21" in status.stdout
    rows = json.loads(run_recorder("nodes", "list", "--db", str(db), "--json").stdout)
    assert len(rows) == 6 and all(row["last_report_at"] and row["report_count"] > 0 for row in rows)
    table = run_recorder("nodes", "list", "--db", str(db)).stdout.splitlines()
    assert all(line.split()[-1] != "-" for line in table[1:7])  # LAST REPORT filled in


LOOKING = [("--help",), ("status",), ("nodes", "list"), ("nodes", "history", "2"), ("nodes", "export")]


@pytest.mark.parametrize("command", LOOKING, ids=" ".join)
def test_commands_that_only_look_import_no_heavy_machinery(two_taps: Path, command: tuple[str, ...]) -> None:
    """What start-up time is made of (benchmarks/startup.py measures it): a command that only
    shows something imports neither the database toolkit, the InfluxDB client, the backfill
    machinery, rich nor pydantic (typer's validators)."""
    arguments = [*command, *(["--db", str(two_taps)] if command != ("--help",) else [])]
    probe = (
        "import sys\n"
        "from recorder.cli.app import main\n"
        f"sys.argv = ['recorder', *{arguments!r}]\n"
        "try:\n    main()\nexcept SystemExit as end:\n    assert not end.code, end.code\n"
        "heavy = ('sqlalchemy', 'alembic', 'influxdb_client', 'recorder.backfill', 'recorder.run',\n"
        "         'rich', 'pydantic', 'recorder.sim.bus', 'serial')\n"
        "loaded = sorted(name for name in sys.modules if name.split('.')[0] in heavy or name in heavy)\n"
        "print('LOADED', loaded, file=sys.stderr)\n"
        "assert not loaded, loaded\n"
    )
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr[-2000:]
