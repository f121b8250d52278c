from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_recorder

JSON_KEYS = {
    "gateway_id",
    "node_id",
    "long_address",
    "barcode",
    "name",
    "string",
    "source",
    "valid_from",
    "valid_to",
    "first_seen",
    "last_seen",
}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nodes") / "state.db"
    run_recorder("observe", "--db", str(path), "--source", "sim:?duration=3m&nodes=12&gateways=2&seed=21")
    return path


def test_list_as_table_and_json(db: Path) -> None:
    table = run_recorder("nodes", "list", "--db", str(db)).stdout
    assert table.splitlines()[0].split() == [
        "BARCODE",
        "NODE",
        "GATEWAY",
        "LABEL",
        "SOURCE",
        "FIRST",
        "SEEN",
        "LAST",
        "SEEN",
        "LAST",
        "REPORT",
    ]
    assert "24 nodes, 24 with a barcode" in table
    rows = json.loads(run_recorder("nodes", "list", "--db", str(db), "--json").stdout)
    assert len(rows) == 24 and set(rows[0]) >= JSON_KEYS
    assert all(row["source"] == "node_table" and row["valid_to"] is None for row in rows)
    only_second = json.loads(
        run_recorder("nodes", "list", "--db", str(db), "--json", "--gateway", "4610").stdout
    )
    assert {row["gateway_id"] for row in only_second} == {4610} and len(only_second) == 12
    assert (
        run_recorder("nodes", "list", "--db", str(db), "--unresolved").stdout.strip()
        == "no nodes known yet without a barcode"
    )


def test_label_history_export_import(db: Path, tmp_path: Path) -> None:
    barcode = json.loads(run_recorder("nodes", "list", "--db", str(db), "--json").stdout)[0]["barcode"]
    assert (
        "name=east 1 string=A1"
        in run_recorder(
            "nodes", "label", barcode.lower(), "--db", str(db), "--name", "east 1", "--string", "A1"
        ).stdout
    )
    table = run_recorder("nodes", "list", "--db", str(db)).stdout
    assert "east 1 / A1" in table
    history = run_recorder("nodes", "history", barcode, "--db", str(db)).stdout
    assert history.splitlines()[0].split()[:4] == ["FROM", "TO", "BARCODE", "NODE"] and "now" in history
    exported = tmp_path / "export.json"
    run_recorder("nodes", "export", "--db", str(db), "--out", str(exported))
    fresh = tmp_path / "fresh.db"
    assert (
        "24 mappings (24 new or changed)"
        in run_recorder("nodes", "import", str(exported), "--db", str(fresh)).stdout
    )
    assert json.loads(run_recorder("nodes", "export", "--db", str(fresh)).stdout) == json.loads(
        exported.read_text()
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("nodes", "label", "4-C2834BZ", "--name", "x"), "check character"),
        (("nodes", "history", "4-ZZZ"), "not a Tigo barcode"),
        (("nodes", "history", "9999"), "no mapping history for '9999'"),
    ],
)
def test_bad_input_leaves_the_database_unchanged(db: Path, arguments: tuple[str, ...], message: str) -> None:
    before = run_recorder("nodes", "export", "--db", str(db)).stdout
    completed = run_recorder(*arguments, "--db", str(db), check=False)
    assert completed.returncode == 2 and message in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1
    assert run_recorder("nodes", "export", "--db", str(db)).stdout == before


def test_malformed_import_file_changes_nothing(db: Path, tmp_path: Path) -> None:
    before = run_recorder("nodes", "export", "--db", str(db)).stdout
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"gateway_node_tables": {"4609": [[2, "04:C0:5B:40:00:C2:86:CC"], [3, "garbage"]]}})
    )
    completed = run_recorder("nodes", "import", str(bad), "--db", str(db), check=False)
    assert completed.returncode == 2 and "'garbage' is not a long address" in completed.stderr
    assert run_recorder("nodes", "export", "--db", str(db)).stdout == before
    missing = run_recorder("nodes", "import", str(tmp_path / "nope.json"), "--db", str(db), check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_database_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "env.db"
    completed = run_recorder("nodes", "list", env={"RECORDER_DB": str(path)}, check=False)
    assert completed.returncode == 2 and f"no state database at {path} (RECORDER_DB)" in completed.stderr
    assert not path.exists()  # reading never creates it
    run_recorder("db", "upgrade", env={"RECORDER_DB": str(path)})
    assert "no nodes known yet" in run_recorder("nodes", "list", env={"RECORDER_DB": str(path)}).stdout
