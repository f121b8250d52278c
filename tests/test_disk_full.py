"""A full disk (issue 19): survived, said, and recovered from without a restart.

The disk is a real 3 MB tmpfs mounted for the test (root can do so on these machines; elsewhere
the tests say why they skip), holding the state database and the raw archive, with a ballast file
standing for what else fills an SD card (InfluxDB's own files, logs).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from recorder.archive import Archive, archive_files
from recorder.diskspace import DiskSpace, is_disk_full
from recorder.reading import Reading
from recorder.sim.truth import compare_points, load_truth
from recorder.storage.inflight import InFlight
from recorder.storage.outbox import Outbox
from recorder.storage.state import StateStore
from recorder.timestamps import to_millis
from tests.conftest import run_recorder
from tests.helpers import T0
from tests.influx import InfluxDatabase, free_ports
from tests.test_run import points, sim, start_run


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 3 MB filesystem (tmpfs), unmounted afterwards."""
    directory = tmp_path / "disk"
    directory.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(directory)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        if subprocess.run(["umount", str(directory)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], capture_output=True)


def fill(path: Path, size: int) -> None:
    with path.open("wb") as file:
        file.write(b"\0" * size)


def fill_up(directory: Path) -> Path:
    """Take every free byte of `directory`'s filesystem."""
    ballast = directory / "ballast"
    descriptor = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(descriptor, b"\0" * size)
            except OSError as error:
                assert is_disk_full(error)
    finally:
        os.close(descriptor)
    return ballast


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def reading(node: int, second: int) -> Reading:
    at = to_millis(T0) + second * 1000
    address = bytes([4, 0xC0, 0x5B, 0x40, 0, 0, 0, node])
    # gateway, node, measured and received ms, slot counter, Vin, Vout, duty, Iin, temperature, RSSI
    return (1, node, at, at, second, 100, 100, 200, 50, 250, 100, address)


# --- the pieces -----------------------------------------------------------------------------------


def test_disk_full_is_recognised_through_sqlalchemy_and_os_errors(small_disk: Path) -> None:
    store = StateStore.open(small_disk / "state.db")
    outbox = Outbox(store.engine)
    fill_up(small_disk)
    with pytest.raises(Exception) as caught:
        outbox.add([reading(1, second) for second in range(5000)], datetime.now(UTC))
    assert is_disk_full(caught.value), repr(caught.value)
    assert not is_disk_full(ValueError("database or disk is fine"))
    assert not is_disk_full(OSError(13, "Permission denied"))
    store.close()


def test_readings_that_cannot_be_committed_stay_in_memory_up_to_a_bound(small_disk: Path) -> None:
    store = StateStore.open(small_disk / "state.db")
    inflight = InFlight(Outbox(store.engine))
    ballast = fill_up(small_disk)
    inflight.add([reading(1, second) for second in range(3000)], arrived=0.0)
    with pytest.raises(Exception) as caught:
        inflight.commit(None, datetime.now(UTC))
    assert is_disk_full(caught.value)
    assert len(inflight) == 3000, "a failed commit keeps every reading in memory"
    taken = inflight.take(10)  # on their way to InfluxDB: never dropped
    assert inflight.shed(2000) == 1000
    kept = inflight.take(5000)
    remaining = sorted(entry.key for entry in taken + kept)
    assert remaining == [*range(10), *range(1010, 3000)], "the oldest were dropped, not those being sent"
    inflight.give_back(taken + kept)
    ballast.unlink()  # space returns: everything held is committed
    committed = inflight.commit(None, datetime.now(UTC))
    assert len(committed) == 2000 and len(inflight) == 0
    with sqlite3.connect(small_disk / "state.db") as connection:
        assert connection.execute("SELECT count(*) FROM outbox").fetchone()[0] == 2000
    store.close()


def test_the_archive_gives_way_and_resumes(small_disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("recorder.archive.RETRY_EVERY", 0.0)
    disk = DiskSpace()
    archive = Archive(small_disk / "archive", retention_days=0, disk=disk)
    payload = os.urandom(50_000)  # incompressible: the files take what they hold
    for hour in range(4):
        archive.write(payload, T0.replace(hour=hour))
    archive.flush()
    assert len(archive_files(small_disk / "archive")) == 4 and not archive.paused
    # The state database cannot commit: the archive pauses and gives up its oldest hour.
    database = small_disk / "state.db"
    disk.failed(database, "readings", "they wait in memory")
    assert archive.give_way()
    hours = [hour.hour for hour, _ in archive_files(small_disk / "archive")]
    assert hours == [1, 2, 3] and archive.paused and archive.removed_for_space == 1
    archive.write(payload, T0.replace(hour=4))
    assert archive.skipped_bytes == len(payload), "nothing is archived while it gives way"
    # Almost no space left: writing stays paused even when nothing else is full.
    disk.recovered(database, "readings")
    ballast = fill_up(small_disk)
    archive.write(payload, T0.replace(hour=4))
    assert archive.paused and archive.skipped_bytes == 2 * len(payload)
    ballast.unlink()
    archive.write(payload, T0.replace(hour=5))
    archive.flush()
    assert not archive.paused
    assert [hour.hour for hour, _ in archive_files(small_disk / "archive")] == [1, 2, 3, 5]
    # Its own write failing for lack of space pauses it too, and is said and counted.
    ballast = fill_up(small_disk)
    archive.write(os.urandom(200_000), T0.replace(hour=5))
    archive.flush()
    assert archive.paused and disk.is_full(small_disk / "archive") and disk.events == 2
    archive.close()
    ballast.unlink()


# --- the run --------------------------------------------------------------------------------------


class Lines:
    """A child's stderr, collected by a thread (so the pipe never fills)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stderr is not None
        stream = process.stderr
        self._thread = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self._thread.start()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def join(self) -> None:
        self._thread.join(timeout=10)


def api_status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5) as response:
        return json.loads(response.read())["recorder"]["disk"]  # type: ignore[no-any-return]


@pytest.mark.slow
@pytest.mark.influx
def test_a_full_disk_is_survived_said_and_recovered_from_without_a_restart(
    influx_database: InfluxDatabase, small_disk: Path, tmp_path: Path
) -> None:
    truth_file = tmp_path / "truth.jsonl"
    db = small_disk / "state.db"
    archive = small_disk / "archive"
    (port,) = free_ports(1)
    run_recorder("db", "upgrade", "--db", str(db))
    ballast = small_disk / "ballast"
    fill(ballast, 2 * 1024 * 1024)  # what else lives on the card: about 1 MB stays free
    server = influx_database.server
    server.stop_influxd()  # the outbox grows until the disk is full
    try:
        process = start_run(
            influx_database,
            db,
            "--source",
            sim(
                start="2025-06-21T10:00:00%2B00:00",
                duration="2h",
                nodes=40,
                seed=19,
                speed="150x",
                truth=truth_file,
            ),
            "--archive",
            str(archive),
            "--commit-interval",
            "2",
            "--exit-at-end",
            "--http",
            f"127.0.0.1:{port}",
        )
        log = Lines(process)
        try:
            wait_for(lambda: "DISK FULL" in log.text, 90, "the disk to fill")
            wait_for(lambda: api_status(port)["readings_in_memory"] > 2000, 60, "readings held in memory")
            full = api_status(port)
            status = run_recorder("status", "--db", str(db)).stdout
            # InfluxDB comes back while the disk is still full: readings from memory go out.
            server.start_influxd()
            wait_for(lambda: len(points(influx_database)) > 3000, 60, "writes from memory")
            still_full = api_status(port)
            ballast.unlink()  # space returns
            process.wait(timeout=180)
        finally:
            process.kill()
            log.join()
    finally:
        server.ensure_running()
    errors = log.text
    assert process.returncode == 0, errors
    assert "Traceback" not in errors
    # Said: one loud line naming the path and the free space (not one per failed write) ...
    said = [line for line in errors.splitlines() if "DISK FULL" in line]
    assert 1 <= len(said) <= 2, said  # the database's, and perhaps the archive's own
    assert any(str(db) in line and " free there)" in line for line in said), said
    assert "disk space is back" in errors
    # ... in the health fields and in `recorder status`.
    assert full["full"] is True and full["failed_writes"] >= 1 and full["path"] == str(db)
    assert full["archive_paused"] is True, "the raw archive gives way while readings are at risk"
    assert "FULL since" in status and "readings wait in memory" in status, status
    assert still_full["full"] is True
    health = influx_database.server.query("SELECT disk_full FROM tigo_recorder", influx_database.name)
    assert any(row["disk_full"] is True for row in health), "the tigo_recorder health field says it"
    # The archive gave way before any reading was risked; none was dropped.
    assert errors.index("raw archive paused") < errors.index("DISK FULL: cannot write readings")
    assert full["readings_dropped"] == 0
    # Recovered without a restart: every reading arrived exactly once, the outbox is empty.
    result = compare_points(load_truth(truth_file), points(influx_database))
    assert result.exact and result.matched == result.expected, result.summary()
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert connection.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    after = run_recorder("status", "--db", str(db)).stdout
    disk_line = next(line for line in after.splitlines() if line.startswith("disk"))
    assert disk_line.split()[1] == "ok" and "failed for lack of space" in disk_line, after
