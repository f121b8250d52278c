"""`recorder backfill` fails fast on configuration and stops when asked (issue 13's bullet).

Against real servers where one can say no (influxd with authentication, influxd without the
database) and a loopback HTTP server that answers what a broken or overloaded InfluxDB answers
(401/403/404 on either API, 503 forever), so the waits are real.
"""

from __future__ import annotations

import http.server
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from recorder.archive import Archive
from recorder.sim.bus import BusSimulation
from recorder.sim.config import SimulationConfig
from tests.conftest import ROOT, run_recorder
from tests.influx import ADMIN, LocalInfluxDB

pytestmark = pytest.mark.influx


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two hours of 30 optimizers as `recorder run` archives them (a node table at the start)."""
    directory = tmp_path_factory.mktemp("archive")
    config = SimulationConfig(
        start=datetime.fromisoformat("2025-06-21T10:00:00+00:00"),
        duration=timedelta(hours=2),
        nodes=30,
        seed=4,
    )
    writer = Archive(directory, retention_days=0)
    for data, seconds in BusSimulation(config).run():
        writer.write(data, config.start + timedelta(seconds=seconds))
    writer.close()
    return directory


class Answering(http.server.ThreadingHTTPServer):
    """A loopback HTTP server that answers every request with one status (and counts them)."""

    def __init__(self, status: int, body: bytes, version: str | None) -> None:
        self.status, self.body, self.version, self.requests = status, body, version, 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                server.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                status = 204 if self.path.startswith("/ping") and server.status != 503 else server.status
                self.send_response(status)
                if server.version:
                    self.send_header("X-Influxdb-Version", server.version)
                body = b"" if status == 204 else server.body
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *_args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def answering() -> Iterator[list[Answering]]:
    servers: list[Answering] = []
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def backfill(
    archive: Path, db: Path, url: str, token: str, bucket: str, *extra: str
) -> tuple[int, str, float]:
    started = time.monotonic()
    completed = run_recorder(
        "backfill",
        str(archive),
        "--db",
        str(db),
        "--influx-url",
        url,
        "--influx-token",
        token,
        "--influx-bucket",
        bucket,
        *extra,
        check=False,
        timeout=120,
        env={"RECORDER_CONFIG": "", "INFLUX_URL": "", "INFLUX_TOKEN": "", "INFLUX_BUCKET": ""},
    )
    return completed.returncode, completed.stderr, time.monotonic() - started


def one_line(stderr: str) -> str:
    """The one line that says what is wrong (beside it, at most the INFO line naming the API)."""
    lines = [line for line in stderr.splitlines() if line.strip() and " INFO " not in line]
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("recorder: error: ")
    return lines[0]


def test_a_wrong_password_ends_the_backfill_at_once(
    influxdb_with_auth: LocalInfluxDB, archive: Path, tmp_path: Path
) -> None:
    influxdb_with_auth.create_database("tigo")
    code, stderr, took = backfill(
        archive, tmp_path / "s.db", influxdb_with_auth.url, f"{ADMIN[0]}:wrong", "tigo"
    )
    assert code == 2 and took < 10
    line = one_line(stderr)
    assert "401" in line and "--influx-token" in line and "wrong" not in line
    assert influxdb_with_auth.count("tigo_optimizer", "tigo") == 0


def test_a_missing_database_ends_the_backfill_at_once(
    influxdb_with_auth: LocalInfluxDB, archive: Path, tmp_path: Path
) -> None:
    token = f"{ADMIN[0]}:{ADMIN[1]}"
    code, stderr, took = backfill(archive, tmp_path / "s.db", influxdb_with_auth.url, token, "absent")
    assert code == 2 and took < 10
    line = one_line(stderr)
    assert "404" in line and 'database not found: "absent"' in line and "--influx-bucket" in line
    # ...and so does a retention policy the database does not have.
    influxdb_with_auth.create_database("tigo")
    code, stderr, took = backfill(archive, tmp_path / "s.db", influxdb_with_auth.url, token, "tigo/weekly")
    assert code == 2 and took < 10
    assert "retention policy not found: weekly" in one_line(stderr)


@pytest.mark.parametrize("api", ["v1", "v2"])
@pytest.mark.parametrize(
    ("status", "body", "setting"),
    [
        (401, b'{"code":"unauthorized","message":"unauthorized access"}', "--influx-token"),
        (403, b'{"error":"insufficient permissions for write"}', "--influx-token"),
        (404, b'{"code":"not found","message":"bucket \\"tigo\\" not found"}', "--influx-bucket"),
    ],
)
def test_refusals_on_either_api_end_the_backfill_naming_the_setting(
    answering: list[Answering],
    archive: Path,
    tmp_path: Path,
    api: str,
    status: int,
    body: bytes,
    setting: str,
) -> None:
    server = Answering(status, body, "v2.7.11")
    answering.append(server)
    code, stderr, took = backfill(archive, tmp_path / "s.db", server.url, "tok", "tigo", "--influx-api", api)
    assert code == 2 and took < 10
    line = one_line(stderr)
    assert str(status) in line and setting in line
    assert server.requests <= 3  # asked once or twice, never retried


def test_a_url_without_a_scheme_is_refused_before_anything_starts(archive: Path, tmp_path: Path) -> None:
    code, stderr, took = backfill(archive, tmp_path / "s.db", "localhost:8086", "u:p", "tigo")
    assert code == 2 and took < 10
    line = one_line(stderr)
    assert "--influx-url" in line and "'localhost:8086'" in line and "http://" in line
    assert not (tmp_path / "s.db").exists()  # refused before the state database was opened


@pytest.mark.parametrize(("signal_number", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_it_while_influxdb_is_retried_and_keeps_the_identity(
    answering: list[Answering], archive: Path, tmp_path: Path, signal_number: int, exit_code: int
) -> None:
    server = Answering(503, b'{"error":"overloaded"}', "1.8.10")
    answering.append(server)
    db = tmp_path / "state.db"
    command = [sys.executable, "-m", "recorder.cli.app", "backfill", str(archive), "--db", str(db)]
    command += ["--influx-url", server.url, "--influx-token", "u:p", "--influx-bucket", "tigo"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "RECORDER_CONFIG": ""},
    )
    stderr: list[str] = []
    retrying = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            stderr.append(line)
            if "retrying in" in line and server.requests >= 3:
                retrying.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert retrying.wait(60), "".join(stderr)
        time.sleep(0.5)  # in the middle of a backoff wait
        started = time.monotonic()
        process.send_signal(signal_number)
        process.wait(timeout=10)
        took = time.monotonic() - started
    finally:
        process.kill()
    reader.join(5)
    text = "".join(stderr)
    assert process.returncode == exit_code, text
    assert took < 2, f"took {took:.1f} s to stop"
    assert "Traceback" not in text
    last = [line for line in text.splitlines() if line.strip()][-1]
    assert last.startswith("recorder: interrupted: 0 points written of ")
    read_count = int(last.split(" of ")[1].split()[0])
    assert read_count > 0
    assert last.endswith("read; run the same command again to finish (nothing is doubled)")
    with sqlite3.connect(db) as connection:  # the node table at the start of the archive was saved
        mappings = connection.execute("SELECT COUNT(*) FROM node_mappings").fetchone()[0]
    assert mappings == 30
