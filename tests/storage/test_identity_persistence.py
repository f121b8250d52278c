"""Identity kept in the state database, driven by the simulator (issue "Persistent identity")."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from recorder.sim.bus import BusSimulation
from recorder.sim.config import SimulationConfig
from tests.conftest import ROOT, run_recorder


def sim(**options: object) -> str:
    return "sim:?" + "&".join(f"{key}={value}" for key, value in options.items())


def observe(db: Path, source: str) -> list[dict[str, Any]]:
    completed = run_recorder("observe", "--db", str(db), "--source", source)
    return [json.loads(line) for line in completed.stdout.splitlines()]


def nodes(db: Path, *arguments: str) -> list[dict[str, Any]]:
    return json.loads(run_recorder("nodes", "list", "--db", str(db), "--json", *arguments).stdout)  # type: ignore[no-any-return]


def truth_mappings(**changes: Any) -> dict[int, str]:
    records: list[dict[str, Any]] = []
    for _ in BusSimulation(SimulationConfig(**changes)).run(records.append):
        break
    return {r["node_id"]: r["barcode"] for r in records if r["type"] == "mapping"}


def test_fresh_database_learns_from_topology_at_sunrise(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    observe(
        db, sim(start="2025-06-21T03:00:00+00:00", duration="90m", nodes=30, controller_restart=0, seed=4)
    )
    rows = nodes(db)
    assert len(rows) == 30
    assert {row["source"] for row in rows} == {"topology_report"}
    truth = truth_mappings(nodes=30, seed=4)
    assert {row["node_id"]: row["barcode"] for row in rows} == truth
    learned = sorted(datetime.fromisoformat(row["valid_from"]) for row in rows)
    assert (learned[-1] - learned[0]).total_seconds() < 600  # all within minutes of sunrise


def test_fresh_database_learns_from_the_node_table_at_night(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    observe(db, sim(start="2025-06-21T21:00:00+00:00", duration="2h", nodes=30, controller_restart=0, seed=4))
    rows = nodes(db)
    assert {row["source"] for row in rows} == {"node_table"}
    assert {row["node_id"]: row["barcode"] for row in rows} == truth_mappings(nodes=30, seed=4)


def test_after_a_restart_the_first_report_is_already_resolved(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    observe(db, sim(start="2025-06-21T08:00:00+00:00", duration="10m", nodes=30, seed=4))
    # A later run without identity traffic at its start: the database supplies the barcodes.
    later = sim(start="2025-06-21T09:00:00+00:00", duration="5m", nodes=30, controller_restart=0, seed=4)
    reports = [line for line in observe(db, later) if line["type"] == "power_report"]
    assert reports and all(line["barcode"] for line in reports)
    # Without the database the same traffic starts unresolved.
    plain = run_recorder("observe", "--source", later).stdout.splitlines()
    first = next(json.loads(line) for line in plain if '"power_report"' in line)
    assert first["barcode"] is None


def test_reassignment_leaves_two_intervals_and_readings_resolve_on_each_side(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    # Through the evening into the night: the nightly node table shows the bit-15 alias.
    run = sim(start="2025-06-21T17:00:00+00:00", duration="6h", nodes=30, seed=11, reassign=1)
    lines = observe(db, run)
    history_by_node: dict[int, list[dict[str, Any]]] = {}
    for row in nodes(db):
        history_by_node.setdefault(row["node_id"], []).append(row)
    aliases = [node_id for node_id in history_by_node if node_id & 0x8000]
    assert len(aliases) == 1
    node_id = aliases[0] & 0x7FFF
    history = json.loads(run_recorder("nodes", "history", str(node_id), "--db", str(db), "--json").stdout)
    history = [row for row in history if row["node_id"] == node_id]
    assert len(history) == 2 and history[0]["valid_to"] == history[1]["valid_from"]
    old, new = history[0]["barcode"], history[1]["barcode"]
    assert old != new and history[1]["valid_to"] is None
    changed_at = datetime.fromisoformat(history[1]["valid_from"])
    for line in lines:
        if line["type"] == "power_report" and line["node_id"] == node_id and line["barcode"]:
            expected = old if datetime.fromisoformat(line["measured_at"]) < changed_at else new
            assert line["barcode"] == expected
    alias_rows = json.loads(run_recorder("nodes", "history", new, "--db", str(db), "--json").stdout)
    assert {row["node_id"] for row in alias_rows} == {node_id, node_id | 0x8000}
    assert [row["is_alias"] for row in alias_rows if row["node_id"] & 0x8000] == [True]


def test_imported_taptap_state_resolves_before_any_identity_traffic(tmp_path: Path) -> None:
    truth = truth_mappings(nodes=30, seed=4)
    state = {
        "gateway_node_tables": {
            "4609": [{"node_id": n, "long_address": _address(b)} for n, b in truth.items()]
        }
    }
    state_file = tmp_path / "taptap.json"
    state_file.write_text(json.dumps(state))
    db = tmp_path / "state.db"
    assert (
        "30 mappings (30 new or changed)"
        in run_recorder("nodes", "import", str(state_file), "--db", str(db)).stdout
    )
    later = sim(start="2025-06-21T09:00:00+00:00", duration="3m", nodes=30, controller_restart=0, seed=4)
    reports = [line for line in observe(db, later) if line["type"] == "power_report"]
    assert reports and all(line["barcode"] == truth[line["node_id"]] for line in reports)


def _address(barcode: str) -> str:
    from recorder.protocol.barcode import address_from_barcode, format_long_address

    return format_long_address(address_from_barcode(barcode))


def test_a_running_recorder_and_nodes_list_share_the_database(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    run_recorder("db", "upgrade", "--db", str(db))
    writer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recorder.cli.app",
            "observe",
            "--db",
            str(db),
            "--source",
            sim(start="2025-06-21T08:00:00+00:00", duration="3h", nodes=135, speed="600x"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        seen = 0
        deadline = time.monotonic() + 60
        readers = 0
        while time.monotonic() < deadline and readers < 25:
            completed = run_recorder("nodes", "list", "--db", str(db), "--json", check=False)
            assert completed.returncode == 0, completed.stderr
            assert "locked" not in completed.stderr
            seen = max(seen, len(json.loads(completed.stdout)))
            readers += 1
        assert writer.poll() is None, "the writer should still be running while we read"
        assert seen > 0
    finally:
        writer.terminate()
        _, errors = writer.communicate(timeout=30)
    assert "locked" not in errors and "Traceback" not in errors
