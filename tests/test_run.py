"""`recorder run` against a real InfluxDB (issue "recorder run")."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from recorder.capture import CaptureReader
from recorder.pipeline import DecodePipeline
from recorder.reading import MEASURED_MS, NODE_ID, RECEIVED_MS, Reading
from recorder.sim.bus import BusSimulation
from recorder.sim.config import SimulationConfig
from recorder.sim.truth import compare_points, load_truth
from tests.bus_server import BusServer, reset, send_slowly
from tests.conftest import ROOT, run_recorder
from tests.influx import InfluxDatabase

pytestmark = pytest.mark.influx


def influx_env(database: InfluxDatabase, **extra: str) -> dict[str, str]:
    return {
        "INFLUX_URL": database.url,
        "INFLUX_TOKEN": database.token,
        "INFLUX_ORG": database.org,
        "INFLUX_BUCKET": database.bucket,
        **extra,
    }


def sim(**options: object) -> str:
    return "sim:?" + "&".join(f"{key}={value}" for key, value in options.items())


def points(database: InfluxDatabase) -> list[dict[str, Any]]:
    return database.server.query("SELECT * FROM tigo_optimizer", database.name)


def start_run(database: InfluxDatabase, db: Path, *arguments: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "recorder.cli.app", "run", "--db", str(db), *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, **influx_env(database), **env},
    )


def drain_outbox(db: Path, env: dict[str, str], *arguments: str) -> None:
    """Restart `run` on `db` with a one-minute source far in the past (2020, a single node), so
    that all it does is send what waits in the outbox: the restart the durability tests end
    with."""
    run_recorder(
        "run",
        "--db",
        str(db),
        "--source",
        sim(duration="1m", nodes=1, seed=99, start="2020-01-01T00:00:00%2B00:00"),
        "--archive-days",
        "0",
        "--exit-at-end",
        *arguments,
        env=env,
    )


def outbox_rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT gateway_id, node_id, measured_at, state FROM outbox").fetchall()


@pytest.mark.slow
def test_end_to_end_equals_the_ground_truth(influx_database: InfluxDatabase, tmp_path: Path) -> None:
    truth_file = tmp_path / "truth.jsonl"
    source = sim(
        start="2025-06-21T08:00:00%2B00:00",
        duration="4h",
        gateways=2,
        nodes=40,
        noise=0.01,
        firmware="4x",
        reassign=1,
        seed=2,
        truth=truth_file,
    )
    db = tmp_path / "state.db"
    completed = run_recorder(
        "run",
        "--source",
        source,
        "--db",
        str(db),
        "--archive",
        str(tmp_path / "archive"),
        "--exit-at-end",
        env=influx_env(influx_database),
        timeout=600,
    )
    truth = load_truth(truth_file)
    stored = points(influx_database)
    result = compare_points(truth, stored)
    assert not (result.missing or result.extra or result.duplicates or result.value_mismatches), (
        result.summary()
    )
    assert result.destroyed > 0 and result.matched == result.expected - result.destroyed
    assert result.max_time_error < 1.0
    # Barcodes: all right, except possibly for the replaced unit in the seconds after its
    # replacement if noise destroyed its announcement (it announces itself again within a minute).
    change = next(r for r in truth if r["type"] == "mapping" and r["node_id"] & 0x8000)
    changed_ms = int(datetime.fromisoformat(change["valid_from"]).timestamp() * 1000)
    for _expected, point in result.barcode_mismatches:
        assert int(point["node_id"]) == change["node_id"] & 0x7FFF
        assert 0 <= point["time"] - changed_ms < 120_000
    assert outbox_rows(db) == []
    health = influx_database.server.query(
        "SELECT * FROM tigo_recorder ORDER BY time DESC LIMIT 1", influx_database.name
    )
    assert health and health[0]["readings"] == result.matched and health[0]["checksum_errors"] > 0
    assert "Traceback" not in completed.stderr
    assert any((tmp_path / "archive").rglob("*.cap.gz"))


def test_influxdb_outage_loses_nothing(influx_database: InfluxDatabase, tmp_path: Path) -> None:
    truth_file = tmp_path / "truth.jsonl"
    source = sim(
        start="2025-06-21T10:00:00%2B00:00", duration="2h", nodes=40, seed=3, speed="400x", truth=truth_file
    )
    db = tmp_path / "state.db"
    process = start_run(
        influx_database,
        db,
        "--source",
        source,
        "--exit-at-end",
        "--archive-days",
        "0",
        "--commit-interval",  # what InfluxDB has not taken after 2 s is committed
        "2",
    )
    server = influx_database.server
    try:
        time.sleep(4)
        server.stop_influxd()
        time.sleep(5)  # the simulation keeps going; readings pile up in the outbox
        held = len(outbox_rows(db))
        server.start_influxd()
        _, errors = process.communicate(timeout=120)
    finally:
        server.ensure_running()
        process.kill()
    assert process.returncode == 0, errors
    assert held > 100, "the outbox should have filled while InfluxDB was down"
    assert "readings are kept in the outbox" in errors
    result = compare_points(load_truth(truth_file), points(influx_database))
    assert result.exact and result.matched == result.expected, result.summary()
    assert outbox_rows(db) == []


def test_kill_9_then_restart_loses_and_doubles_nothing_that_reached_the_outbox(
    influx_database: InfluxDatabase, tmp_path: Path
) -> None:
    db = tmp_path / "state.db"
    archive = tmp_path / "archive"
    truth_file = tmp_path / "truth.jsonl"
    source = sim(
        start="2025-06-21T10:00:00%2B00:00", duration="3h", nodes=40, seed=5, speed="300x", truth=truth_file
    )
    server = influx_database.server
    server.stop_influxd()  # nothing can be sent: everything decoded waits in the outbox
    try:
        process = start_run(
            influx_database, db, "--source", source, "--archive", str(archive), "--commit-interval", "2"
        )
        time.sleep(8)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        server.start_influxd()
    committed = {(g, n, m) for g, n, m, _ in outbox_rows(db)}
    assert len(committed) > 500
    # Restart on the same database with nothing new to read: the outbox must drain completely.
    drain_outbox(db, influx_env(influx_database))
    assert outbox_rows(db) == []
    stored = points(influx_database)
    keys = {(int(p["node_id"]), p["time"]) for p in stored}
    assert {(n, m) for _, n, m in committed} <= keys
    # The raw archive holds what was received before the kill; replaying it fills in the rest.
    files = sorted(archive.rglob("*.cap.gz"))
    assert files
    for path in files:
        run_recorder(
            "run",
            "--db",
            str(db),
            "--source",
            f"capture:{path}",
            "--archive-days",
            "0",
            "--exit-at-end",
            env=influx_env(influx_database),
        )
    after = points(influx_database)
    truth = load_truth(truth_file)
    last_kept = max(p["time"] for p in after)
    early = [
        r
        for r in truth
        if r["type"] != "power_report"
        or datetime.fromisoformat(r["measured_at"]).timestamp() * 1000 < last_kept - 60_000
    ]
    result = compare_points(early, [p for p in after if p["time"] < last_kept - 60_000])
    assert not (result.missing or result.duplicates or result.value_mismatches), result.summary()


def test_tcp_source_misbehaving_converter(influx_database: InfluxDatabase, tmp_path: Path) -> None:
    config = SimulationConfig(
        start=datetime.fromisoformat("2025-06-21T10:00:00+00:00"),
        duration=timedelta(minutes=6),
        nodes=20,
        seed=8,
    )
    chunks = [data for data, _ in BusSimulation(config).run()]
    size = len(chunks) // 3
    thirds = [b"".join(chunks[i * size : (i + 1) * size]) for i in range(3)]  # consecutive, whole frames
    stop = threading.Event()

    def serve(client: socket.socket, number: int) -> None:
        if number >= 3:
            stop.wait(60)
            return
        send_slowly(client, thirds[number], pieces=20, pause=0.02)
        if number == 0:
            client.close()
        elif number == 1:
            reset(client)
        else:
            stop.wait(60)  # half-open: silent but connected; the watchdog must notice

    server = BusServer(serve)
    db = tmp_path / "state.db"
    process = start_run(
        influx_database,
        db,
        "--source",
        f"tcp://127.0.0.1:{server.port}",
        "--watchdog-seconds",
        "2",
        "--archive-days",
        "0",
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.connections < 4:
            time.sleep(0.2)
        time.sleep(2)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
    finally:
        stop.set()
        server.close()
        process.kill()
    assert process.returncode == 0
    assert server.connections >= 4
    assert server.received_from_clients == 0  # the recorder never transmitted a byte
    assert len(points(influx_database)) > 100


def test_sigterm_exits_promptly_and_keeps_unsent_readings(
    influx_database: InfluxDatabase, tmp_path: Path
) -> None:
    db = tmp_path / "state.db"
    server = influx_database.server
    server.stop_influxd()
    try:
        process = start_run(
            influx_database, db, "--source", sim(duration="6h", nodes=30, speed="200x"), "--archive-days", "0"
        )
        # Running (signal handlers in place) once readings reach the outbox; on a loaded machine
        # that can take longer than a fixed few seconds, and SIGTERM before it would kill it.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(sqlite3.Error):
                if len(outbox_rows(db)) > 100:
                    break
            time.sleep(0.2)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        took = time.monotonic() - started
    finally:
        server.start_influxd()
    assert process.returncode == 0 and took < 10
    assert len(outbox_rows(db)) > 0  # not lost: waiting for the next run


def test_bad_data_is_parked_not_retried_forever(influx_database: InfluxDatabase, tmp_path: Path) -> None:
    # Make InfluxDB reject our points: `rssi` already exists as a float in this database.
    # (Field types are per shard in InfluxDB 1.x: the conflicting point sits in the simulated week.)
    influx_database.server.write_v1(
        influx_database.name, b"tigo_optimizer,node_id=1 rssi=1.5 1750496400000\n"
    )
    db = tmp_path / "state.db"
    completed = run_recorder(
        "run",
        "--db",
        str(db),
        "--source",
        sim(duration="2m", nodes=5),
        "--archive-days",
        "0",
        "--exit-at-end",
        env=influx_env(influx_database),
        timeout=120,
    )
    with sqlite3.connect(db) as connection:
        parked = connection.execute("SELECT line, error FROM parked_points").fetchall()
    assert parked and all("field type conflict" in error for _, error in parked)
    assert all(line.startswith("tigo_optimizer,") for line, _ in parked)
    assert outbox_rows(db) == []
    assert "InfluxDB rejected a point" in completed.stderr
    status = run_recorder("status", "--db", str(db)).stdout
    assert f"{len(parked)} parked" in status


def test_identity_hold_and_expiry(influx_database: InfluxDatabase, tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    # No controller start in the small hours: reports from a mid-morning start have no identity
    # traffic at all, so they are held; with a 10-minute hold they are then written node-only.
    source = sim(start="2025-06-21T10:00:00%2B00:00", duration="30m", nodes=10, controller_restart=0, seed=13)
    run_recorder(
        "run",
        "--db",
        str(db),
        "--source",
        source,
        "--archive-days",
        "0",
        "--identity-hold",
        "10m",
        "--exit-at-end",
        env=influx_env(influx_database),
    )
    stored = points(influx_database)
    listed = json.loads(run_recorder("nodes", "list", "--db", str(db), "--json", "--unresolved").stdout)
    # Nodes never identified: written after the hold, tagged with the node ID only. (A node that
    # announced itself in a topology report meanwhile is written with its barcode.)
    assert any(p.get("barcode") is None for p in stored)
    waiting = sum(row["waiting"] for row in listed)
    assert waiting > 0  # the last 10 minutes still wait
    # Identity arrives (an import): the waiting readings go out with their barcodes.
    truth: list[dict[str, Any]] = []
    for _ in BusSimulation(SimulationConfig(nodes=10, seed=13)).run(truth.append):
        break
    state = {
        "gateway_node_tables": {
            "4609": [[r["node_id"], r["long_address"]] for r in truth if r["type"] == "mapping"]
        }
    }
    (tmp_path / "state.json").write_text(json.dumps(state))
    run_recorder("nodes", "import", str(tmp_path / "state.json"), "--db", str(db))
    run_recorder(
        "run",
        "--db",
        str(db),
        "--source",
        sim(duration="1m", nodes=10, seed=13, start="2025-06-22T10:00:00%2B00:00"),
        "--archive-days",
        "0",
        "--exit-at-end",
        env=influx_env(influx_database),
    )
    with_barcode_before = sum(1 for p in stored if p.get("barcode"))
    with_barcode = [p for p in points(influx_database) if p.get("barcode")]
    assert len(with_barcode) >= with_barcode_before + waiting
    assert json.loads(run_recorder("nodes", "list", "--db", str(db), "--json", "--unresolved").stdout) == []


def test_dry_run_prints_line_protocol_and_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    completed = run_recorder(
        "run", "--dry-run", "--db", str(db), "--source", sim(duration="2m", nodes=5), "--exit-at-end"
    )
    lines = completed.stdout.splitlines()
    assert any(line.startswith("tigo_optimizer,barcode=4-") for line in lines)
    assert any(line.startswith("tigo_recorder,source=") for line in lines)
    assert not db.exists()


def test_systemd_notify_and_status(influx_database: InfluxDatabase, tmp_path: Path) -> None:
    notify = tmp_path / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(notify))
    receiver.settimeout(0.2)
    db = tmp_path / "state.db"
    process = start_run(
        influx_database,
        db,
        "--source",
        sim(duration="2h", nodes=10, speed="100x"),
        "--archive-days",
        "0",
        NOTIFY_SOCKET=str(notify),
        WATCHDOG_USEC="1000000",
    )
    messages: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            {"READY=1", "WATCHDOG=1"} <= set(messages) and any(m.startswith("STATUS=") for m in messages)
        ):
            with contextlib.suppress(TimeoutError):
                messages.append(receiver.recv(4096).decode())
        status = run_recorder("status", "--db", str(db)).stdout
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        receiver.settimeout(2)
        messages.append(receiver.recv(4096).decode())
    finally:
        process.kill()
        receiver.close()
    assert {"READY=1", "WATCHDOG=1"} <= set(messages)
    assert "STOPPING=1" in messages or any(m.startswith("STATUS=") for m in messages)
    assert "source           simulator" in status and "points written" in status


def test_the_token_never_appears_in_output(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recorder.cli.app",
            "run",
            "--db",
            str(tmp_path / "state.db"),
            "--archive-days",
            "0",
            "--source",
            sim(duration="10m", nodes=2, speed="20x"),
            "--influx-url",
            "http://127.0.0.1:1",
            "--influx-token",
            "admin:sup3r-s3cret",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    time.sleep(5)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "sup3r-s3cret" not in stdout + stderr
    assert "cannot reach InfluxDB at http://127.0.0.1:1" in stderr


# --- The loss guarantee: readings wait in memory at most the commit interval ----------------------


def archived_readings(archive: Path) -> list[Reading]:
    """Every reading the raw archive holds, decoded as the run decoded it."""
    pipeline = DecodePipeline()
    readings: list[Reading] = []
    for path in sorted(archive.rglob("*.cap.gz")):
        for data, at in CaptureReader(path):
            readings += pipeline.feed(data, at).readings
    return readings


def upgraded_database(tmp_path: Path) -> Path:
    db = tmp_path / "state.db"
    run_recorder("db", "upgrade", "--db", str(db))
    return db


def test_readings_influxdb_acknowledges_in_time_never_touch_the_outbox(
    influx_database: InfluxDatabase, tmp_path: Path
) -> None:
    db = upgraded_database(tmp_path)
    with sqlite3.connect(db) as connection:  # a witness of every row the recorder ever inserts
        connection.executescript(
            """
            CREATE TABLE outbox_witness (node_id INTEGER, measured_at INTEGER, state TEXT);
            CREATE TRIGGER outbox_witness AFTER INSERT ON outbox BEGIN
                INSERT INTO outbox_witness VALUES (NEW.node_id, NEW.measured_at, NEW.state);
            END;
            """
        )
    process = start_run(
        influx_database,
        db,
        "--source",
        sim(start="2025-06-21T10:00:00%2B00:00", duration="2h", nodes=40, seed=21, speed="10x"),
        "--archive-days",
        "0",
        "--commit-interval",  # commit points every 10 s, while InfluxDB acknowledges within ~1 s
        "20",
    )
    try:
        time.sleep(25)  # two commit points pass
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, errors
    with sqlite3.connect(db) as connection:
        witnessed = connection.execute("SELECT node_id, measured_at, state FROM outbox_witness").fetchall()
        health = json.loads(
            connection.execute("SELECT value FROM recorder_state WHERE key = 'health'").fetchone()[0]
        )
    stored = points(influx_database)
    assert len(stored) > 300 and health["readings"] >= len(stored)
    # Readings waiting for their barcode may be committed (held); none that could be sent was.
    assert [row for row in witnessed if row[2] != "held"] == []
    assert outbox_rows(db) == [] or all(state == "held" for *_, state in outbox_rows(db))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["influxdb down", "influxdb up", "no barcodes yet"])
def test_sigkill_loses_at_most_the_commit_interval_and_a_restart_doubles_nothing(
    influx_database: InfluxDatabase, tmp_path: Path, case: str
) -> None:
    bound = 4.0  # --commit-interval, seconds (wall clock)
    speed = 5  # source time runs at most this much faster than the wall clock
    db = tmp_path / "state.db"
    archive = tmp_path / "archive"
    restart = 0 if case == "no barcodes yet" else 1  # without a controller start, nodes stay unknown
    source = sim(
        start="2025-06-21T10:00:00%2B00:00",
        duration="1h",
        nodes=135,
        seed=22,
        speed=f"{speed}x",
        controller_restart=restart,
    )
    server = influx_database.server
    if case == "influxdb down":
        server.stop()  # influxd itself: the recorder sees connection refused
    try:
        process = start_run(
            influx_database,
            db,
            "--source",
            source,
            "--archive",
            str(archive),
            "--commit-interval",
            str(bound),
        )
        time.sleep(16)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        server.start()
    # What had arrived more than the bound before the kill must be in InfluxDB or the outbox. The
    # archive (flushed every commit interval) says what had arrived, and when, in source time.
    archived = archived_readings(archive)
    assert len(archived) > 100
    last_arrival = max(reading[RECEIVED_MS] for reading in archived)
    due = {
        (r[NODE_ID], r[MEASURED_MS])
        for r in archived
        if r[RECEIVED_MS] <= last_arrival - bound * speed * 1000
    }
    committed = outbox_rows(db)
    kept = {(node, measured) for _, node, measured, _ in committed}
    sent = {(int(p["node_id"]), p["time"]) for p in points(influx_database)}
    assert due and due <= kept | sent, f"{len(due - kept - sent)} readings older than the bound were lost"
    with sqlite3.connect(db) as connection:
        ages = connection.execute("SELECT max(enqueued_at - received_at) FROM outbox").fetchone()[0]
    if case == "influxdb up":
        assert len(sent) > len(kept)  # acknowledged from memory, mostly never committed
    else:
        assert kept and ages <= (bound + 0.5) * speed * 1000  # committed within the bound
    if case == "no barcodes yet":
        # (a node that announces itself meanwhile is sent with its barcode, from memory)
        assert {state for *_, state in committed} == {"held"}
    # A restart on the same database sends what was committed, once.
    drain_outbox(db, influx_env(influx_database))
    stored = points(influx_database)
    keys = [(int(p["node_id"]), p["time"]) for p in stored if p["time"] > 1_600_000_000_000]
    assert len(keys) == len(set(keys)), "a reading was written twice"
    if case != "no barcodes yet":
        assert due <= set(keys) and outbox_rows(db) == []
