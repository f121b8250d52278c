"""Power cuts (issue 19): SIGKILL at random moments, many times, while the outbox is written.

Each cycle starts `recorder run` on the same state database with a simulated bus whose source
time follows on from the last cycle's, waits until it records, and kills it (SIGKILL: no handler
runs, as in a power cut) after a seeded random delay. With a commit interval of one second and,
in most cycles, InfluxDB stopped, the recorder commits a few hundred readings every half second
(synced to the disk), so many kills land inside a commit. After each kill the database must open
cleanly (integrity check, `recorder status`) and hold no reading twice; at the end, after a
restart that drains the outbox, every reading that arrived more than the bound before its kill
(the cycle's raw archive says what arrived, and when) must be in InfluxDB, once.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import struct
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from recorder.reading import MEASURED_MS, NODE_ID, RECEIVED_MS
from recorder.timestamps import to_millis
from tests.conftest import run_recorder
from tests.influx import InfluxDatabase
from tests.test_run import archived_readings, drain_outbox, influx_env, outbox_rows, points, sim, start_run

pytestmark = [pytest.mark.influx, pytest.mark.slow]

KILLS = 24
SEED = 19
BOUND = 1.0  # --commit-interval, seconds (wall clock)
SPEED = 30  # source time runs at most this much faster than the wall clock
START = datetime.fromisoformat("2025-06-21T08:00:00+00:00")


def wait_until_recording(process: subprocess.Popen[str], timeout: float = 60) -> None:
    """Read the run's log until it says it is recording (start-up took its time)."""
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    for line in process.stderr:
        if "recording from" in line:
            return
        if time.monotonic() > deadline:
            break
    raise AssertionError("recorder run did not start recording")


def kill_when_the_wal_is_written(process: subprocess.Popen[str], wal: Path, timeout: float) -> None:
    """SIGKILL the moment the write-ahead log changes: inside a commit, or just after it."""
    deadline = time.monotonic() + timeout

    def stamp() -> int:
        try:
            return os.stat(wal).st_mtime_ns
        except FileNotFoundError:
            return 0

    before = stamp()
    while stamp() == before and time.monotonic() < deadline:
        pass
    process.send_signal(signal.SIGKILL)


def torn_transaction(wal: Path) -> bool:
    """Whether the WAL ends in valid frames of a transaction that never committed (the kill came
    while it was being written). Follows SQLite's file format: salts and running checksums."""
    try:
        data = wal.read_bytes()
    except FileNotFoundError:
        return False
    if len(data) < 32:
        return False
    magic, _version, page_size, _sequence, salt1, salt2 = struct.unpack(">6I", data[:24])
    order = ">" if magic == 0x377F0683 else "<"

    def checksum(buffer: bytes, s0: int, s1: int) -> tuple[int, int]:
        words = struct.unpack(f"{order}{len(buffer) // 4}I", buffer)
        for index in range(0, len(words), 2):
            s0 = (s0 + words[index] + s1) & 0xFFFFFFFF
            s1 = (s1 + words[index + 1] + s0) & 0xFFFFFFFF
        return s0, s1

    s0, s1 = checksum(data[:24], 0, 0)
    offset, frames, committed = 32, 0, True
    while offset + 24 + page_size <= len(data):
        page_number, commit_size, frame_salt1, frame_salt2, c0, c1 = struct.unpack(
            ">6I", data[offset : offset + 24]
        )
        if (frame_salt1, frame_salt2) != (salt1, salt2) or page_number == 0:
            break
        s0, s1 = checksum(data[offset : offset + 8], s0, s1)
        s0, s1 = checksum(data[offset + 24 : offset + 24 + page_size], s0, s1)
        if (s0, s1) != (c0, c1):
            break
        frames += 1
        committed = commit_size != 0
        offset += 24 + page_size
    return frames > 0 and not committed


def test_sigkill_during_commits_loses_at_most_the_bound_and_doubles_nothing(
    influx_database: InfluxDatabase, tmp_path: Path
) -> None:
    generator = random.Random(SEED)
    db = tmp_path / "state.db"
    run_recorder("db", "upgrade", "--db", str(db))
    server = influx_database.server
    due: set[tuple[int, int]] = set()
    arrived = 0
    influx_down_kills = 0
    archived_cycles = 0
    torn = 0  # kills that left a transaction half written in the WAL
    try:
        for cycle in range(KILLS):
            influx_up = generator.random() < 0.25  # mostly down: every reading is committed
            if influx_up:
                server.ensure_running()
            elif server.influxd_running:
                server.stop_influxd()
            influx_down_kills += not influx_up
            archive = tmp_path / f"archive-{cycle}"
            start = (START + timedelta(hours=cycle)).isoformat().replace("+", "%2B")
            process = start_run(
                influx_database,
                db,
                "--source",
                sim(start=start, duration="1h", nodes=135, seed=SEED, speed=f"{SPEED}x"),
                "--archive",
                str(archive),
                "--commit-interval",
                str(BOUND),
                "--http",
                "",
            )
            try:
                wait_until_recording(process)
                time.sleep(generator.uniform(1.5, 4.0))
                if cycle % 2:  # half the kills at the moment a commit writes the WAL
                    kill_when_the_wal_is_written(process, db.with_name(db.name + "-wal"), timeout=3)
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=10)
            finally:
                process.kill()
                process.communicate()
            torn += torn_transaction(db.with_name(db.name + "-wal"))
            # The database opens cleanly and holds no reading twice.
            with sqlite3.connect(db) as connection:
                assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                doubled = connection.execute(
                    "SELECT count(*) FROM (SELECT 1 FROM outbox GROUP BY gateway_id, node_id, measured_at "
                    "HAVING count(*) > 1)"
                ).fetchone()[0]
            assert doubled == 0
            assert "outbox" in run_recorder("status", "--db", str(db)).stdout
            # What arrived more than the bound before the kill is due (in source time).
            for empty in [path for path in archive.rglob("*.cap.gz") if path.stat().st_size == 0]:
                empty.unlink()  # created, but killed before its first flush
            readings = archived_readings(archive)
            if not readings:  # killed before the archive's first flush: nothing is due
                continue
            archived_cycles += 1
            arrived += len(readings)
            last = max(reading[RECEIVED_MS] for reading in readings)
            due |= {
                (r[NODE_ID], r[MEASURED_MS])
                for r in readings
                if r[RECEIVED_MS] <= last - BOUND * SPEED * 1000
            }
            if not influx_up:  # then all of this cycle's due readings must be in the outbox
                kept = {(node, measured) for _, node, measured, _ in outbox_rows(db)}
                this_cycle = to_millis(START + timedelta(hours=cycle))
                missing = {key for key in due if key[1] >= this_cycle} - kept
                assert not missing, f"cycle {cycle}: {len(missing)} readings older than the bound lost"
    finally:
        server.ensure_running()
    print(f"{KILLS} kills, {influx_down_kills} with InfluxDB down, {torn} inside a commit's WAL write")
    assert influx_down_kills >= KILLS // 2 and archived_cycles >= KILLS // 2
    # A restart drains the outbox: every due reading is in InfluxDB, once.
    drain_outbox(db, influx_env(influx_database), "--http", "")
    assert outbox_rows(db) == []
    stored = points(influx_database)
    keys = [(int(p["node_id"]), p["time"]) for p in stored if p["time"] > 1_600_000_000_000]
    assert len(keys) == len(set(keys)), "a reading was written twice"
    lost = due - set(keys)
    assert not lost, f"{len(lost)} of {len(due)} readings older than the bound were lost"
    assert len(due) > KILLS * 100
    # What the bound allows to be lost was lost at most: the rest of what arrived.
    assert len(set(keys)) >= len(due) and arrived >= len(due)
