"""A real, throwaway InfluxDB for tests: influxd 1.6 on loopback, behind an nginx v2-write front.

Debian only packages InfluxDB 1.6.7, which has no `/api/v2/write`. The nginx front maps that
endpoint onto 1.6's `/write` the way InfluxDB 1.8's compatibility layer does (bucket
`database[/retention]`, v2 precision names), so the recorder's `influxdb-client` writes to it as it
would to a user's server, while tests read back with InfluxQL straight from influxd.

Used as a pytest plugin (`pytest_plugins = ["tests.influx"]`): the session fixture `influxdb`
starts one server, and `influx_database` gives each test its own fresh database.
`scripts/influxdb-local` starts the same pair for the quickstart; keep the two config templates in
step with the ones there.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

INFLUXD_CONF = """\
# A throwaway InfluxDB 1.6 on loopback: everything it writes stays in this directory.
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{dir}/meta"

[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  query-log-enabled = false

[retention]
  # Replayed or back-filled points carry old timestamps; never expire them.
  enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false

[http]
  bind-address = "127.0.0.1:{http_port}"
  unix-socket-enabled = false
  pprof-enabled = false

[ifql]
  enabled = false

[logging]
  suppress-logo = true

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false
"""

NGINX_CONF = """\
# InfluxDB 2.x's write endpoint in front of InfluxDB 1.6, as 1.8's compatibility layer maps it.
daemon off;
worker_processes 1;
pid "{dir}/nginx.pid";
error_log "{dir}/nginx-error.log";

events {{
  worker_connections 256;
}}

http {{
  access_log "{dir}/nginx-access.log";
  # The default 1 MB limit answers 413 to a large batch. Keeping bodies and responses in memory
  # means workers never write temp files (as root they run as nobody, who may not reach this dir).
  client_max_body_size 64m;
  client_body_buffer_size 64m;
  proxy_buffering off;
  client_body_temp_path "{dir}/nginx-temp/body";
  proxy_temp_path "{dir}/nginx-temp/proxy";
  fastcgi_temp_path "{dir}/nginx-temp/fastcgi";
  uwsgi_temp_path "{dir}/nginx-temp/uwsgi";
  scgi_temp_path "{dir}/nginx-temp/scgi";

  map $arg_precision $v1_precision {{ ns n; us u; ms ms; s s; default n; }}
  # bucket "db/rp" (the slash usually arrives URL-encoded) -> db and rp; a plain bucket is the db.
  map $arg_bucket $v1_db {{ "~^(?<bucket_db>.*?)(/|%2[fF])" $bucket_db; default $arg_bucket; }}
  map $arg_bucket $v1_rp {{ "~(/|%2[fF])(?<bucket_rp>.*)$" $bucket_rp; default ""; }}

  server {{
    listen 127.0.0.1:{front_port};
    location = /api/v2/write {{
      proxy_pass http://127.0.0.1:{http_port}/write?db=$v1_db&rp=$v1_rp&precision=$v1_precision;
    }}
    location / {{
      proxy_pass http://127.0.0.1:{http_port};
    }}
  }}
}}
"""

# /usr/sbin is often missing from a non-root PATH, and that is where Debian puts nginx.
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
_PACKAGES = {"influxd": "influxdb", "nginx": "nginx-light"}
_STARTUP_TIMEOUT = 30.0


class InfluxUnavailable(RuntimeError):
    """influxd or nginx is not installed, or did not come up."""


def find_programs() -> dict[str, str]:
    """Paths of influxd and nginx; InfluxUnavailable naming the Debian packages if any is missing."""
    found = {name: shutil.which(name, path=_SEARCH_PATH) for name in _PACKAGES}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        packages = " ".join(_PACKAGES[name] for name in missing)
        raise InfluxUnavailable(
            f"{' and '.join(missing)} not found: the InfluxDB tests need a real server. "
            f"Install it with: apt-get install {packages}"
        )
    return {name: path for name, path in found.items() if path is not None}


def free_ports(count: int) -> list[int]:
    """Ports nobody listens on right now (all held at once, so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} not written)"
    return "\n".join(text.splitlines()[-lines:]) or f"({path} is empty)"


def _http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status a GET of `url` answers, or None if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, urllib.error.URLError):
        return None


def _stop_group(process: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    """Terminate a child started with start_new_session=True, and everything in its process group.

    Signals go to the group only while the leader is not yet reaped, so its id cannot have been
    reused by a process we did not start.
    """
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)


class LocalInfluxDB:
    """influxd 1.6 plus the nginx v2-write front, both on free loopback ports, all files in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "nginx-temp").mkdir(exist_ok=True)
        self.http_port, self.rpc_port, self.front_port = free_ports(3)
        self.influxd_conf = self.directory / "influxd.conf"
        self.nginx_conf = self.directory / "nginx.conf"
        self.influxd_log = self.directory / "influxd.log"
        self.nginx_log = self.directory / "nginx.log"
        self.nginx_error_log = self.directory / "nginx-error.log"
        ports = {"http_port": self.http_port, "rpc_port": self.rpc_port, "front_port": self.front_port}
        self.influxd_conf.write_text(INFLUXD_CONF.format(dir=self.directory, **ports))
        self.nginx_conf.write_text(NGINX_CONF.format(dir=self.directory, **ports))
        self._influxd: subprocess.Popen[bytes] | None = None
        self._nginx: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The nginx front: what influxdb-client should be given."""
        return f"http://127.0.0.1:{self.front_port}"

    @property
    def influxd_pid(self) -> int | None:
        """influxd's process id while it runs (benchmarks read its CPU time)."""
        return self._influxd.pid if self._influxd is not None and self._influxd.poll() is None else None

    @property
    def front_pid(self) -> int | None:
        """nginx's master process id while it runs (its worker is a child)."""
        return self._nginx.pid if self._nginx is not None and self._nginx.poll() is None else None

    @property
    def influxd_url(self) -> str:
        """influxd's own 1.x HTTP API (InfluxQL /query, /write, /ping)."""
        return f"http://127.0.0.1:{self.http_port}"

    # --- processes -------------------------------------------------------------------------------

    def start(self) -> None:
        self.start_influxd()
        self.start_front()
        self._wait_until(
            lambda: _http_status(f"{self.url}/ping") == 204,
            self._nginx,
            "nginx to proxy /ping to influxd",
            [self.nginx_error_log, self.nginx_log, self.influxd_log],
        )

    def stop(self) -> None:
        self.stop_front()
        self.stop_influxd()

    def start_influxd(self) -> None:
        if self.influxd_running:
            return
        programs = find_programs()
        self._influxd = self._spawn(
            [programs["influxd"], "-config", str(self.influxd_conf)], self.influxd_log
        )
        self._wait_until(
            lambda: _http_status(f"{self.influxd_url}/ping") == 204,
            self._influxd,
            f"influxd to answer /ping on {self.influxd_url}",
            [self.influxd_log],
        )

    def stop_influxd(self) -> None:
        _stop_group(self._influxd)
        self._influxd = None

    def start_front(self) -> None:
        if self.front_running:
            return
        programs = find_programs()
        # nginx opens its compiled-in error log before it reads the config; -e keeps that in here too.
        command = [
            programs["nginx"],
            "-e",
            str(self.nginx_error_log),
            "-p",
            str(self.directory),
            "-c",
            str(self.nginx_conf),
        ]
        self._nginx = self._spawn(command, self.nginx_log)
        # Any answer will do: influxd may be down on purpose, and then nginx says 502.
        self._wait_until(
            lambda: _http_status(f"{self.url}/ping") is not None,
            self._nginx,
            f"nginx to listen on {self.url}",
            [self.nginx_error_log, self.nginx_log],
        )

    def stop_front(self) -> None:
        _stop_group(self._nginx)
        self._nginx = None

    @property
    def influxd_running(self) -> bool:
        return self._influxd is not None and self._influxd.poll() is None

    @property
    def front_running(self) -> bool:
        return self._nginx is not None and self._nginx.poll() is None

    def ensure_running(self) -> None:
        """Restart whatever a test stopped (and did not restart), keeping ports and data."""
        if not self.influxd_running:
            self.start_influxd()
        if not self.front_running:
            self.start_front()

    def _spawn(self, command: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as output:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,
            )

    def _wait_until(
        self,
        ready: Callable[[], bool],
        process: subprocess.Popen[bytes] | None,
        what: str,
        logs: list[Path],
    ) -> None:
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while True:
            if ready():
                return
            exited = process is None or process.poll() is not None
            if exited or time.monotonic() > deadline:
                reason = "the process exited" if exited else f"gave up after {_STARTUP_TIMEOUT:.0f} s"
                tails = "\n".join(f"--- {log.name} (last lines) ---\n{_tail(log)}" for log in logs)
                self.stop()
                raise InfluxUnavailable(f"waiting for {what}: {reason}\n{tails}")
            time.sleep(0.05)

    # --- InfluxQL --------------------------------------------------------------------------------

    def create_database(self, name: str) -> None:
        self._influxql(f"CREATE DATABASE {_identifier(name)}", method="POST")

    def drop_database(self, name: str) -> None:
        self._influxql(f"DROP DATABASE {_identifier(name)}", method="POST")

    def write_v1(self, database: str, lines: bytes) -> None:
        """Line protocol (ms timestamps) straight to influxd's own /write, past the recorder."""
        request = urllib.request.Request(
            f"{self.influxd_url}/write?db={urllib.parse.quote(database)}&precision=ms", data=lines
        )
        urllib.request.urlopen(request, timeout=30).close()

    def execute(self, statement: str) -> None:
        """An InfluxQL statement that changes something (POST), e.g. a retention policy."""
        self._influxql(statement, method="POST")

    def query_series(self, q: str, database: str) -> list[dict[str, Any]]:
        """Every series of the first statement's result: name, tags, columns, values, and rows as dicts."""
        result = self._influxql(q, database=database)[0]
        series = []
        for entry in result.get("series", []):
            columns = entry["columns"]
            values = entry.get("values", [])
            series.append(
                {
                    "name": entry.get("name"),
                    "tags": entry.get("tags", {}),
                    "columns": columns,
                    "values": values,
                    "rows": [dict(zip(columns, row, strict=True)) for row in values],
                }
            )
        return series

    def query(self, q: str, database: str) -> list[dict[str, Any]]:
        """Rows (column -> value, times in epoch milliseconds) of the first series, or [] if none."""
        series = self.query_series(q, database)
        return series[0]["rows"] if series else []

    def count(self, measurement: str, database: str, field: str | None = None) -> int:
        """Number of points in `measurement`.

        `SELECT COUNT(*)` counts each field separately, so a point lacking a field would go uncounted.
        By default this counts the rows of a raw `SELECT *` (one per point, exact for any schema);
        give `field` that every point has to count server-side instead.
        """
        source = _identifier(measurement)
        if field is not None:
            rows = self.query(f"SELECT COUNT({_identifier(field)}) FROM {source}", database)
            return int(rows[0]["count"]) if rows else 0
        return sum(len(entry["values"]) for entry in self.query_series(f"SELECT * FROM {source}", database))

    def _influxql(self, q: str, database: str | None = None, method: str = "GET") -> list[dict[str, Any]]:
        parameters = {"q": q, "epoch": "ms"}
        if database is not None:
            parameters["db"] = database
        url = f"{self.influxd_url}/query?{urllib.parse.urlencode(parameters)}"
        request = urllib.request.Request(url, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace").strip()
            raise RuntimeError(f"InfluxQL {q!r} failed: HTTP {error.code}: {detail}") from None
        results: list[dict[str, Any]] = body.get("results", [])
        for result in results:
            if "error" in result:
                raise RuntimeError(f"InfluxQL {q!r} failed: {result['error']}")
        if not results:
            raise RuntimeError(f"InfluxQL {q!r}: no results in {body!r}")
        return results


def _identifier(name: str) -> str:
    """An InfluxQL double-quoted identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- pytest fixtures -----------------------------------------------------------------------------


@dataclass(frozen=True)
class InfluxDatabase:
    """One test's database, with what influxdb-client needs to write to it through the front."""

    name: str
    url: str
    token: str
    org: str
    bucket: str
    server: LocalInfluxDB


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInfluxDB]:
    """One influxd + nginx for the whole session."""
    try:
        find_programs()
    except InfluxUnavailable as error:
        # Fail rather than skip: a skipped InfluxDB test would look like a passing one.
        pytest.fail(str(error), pytrace=False)
    server = LocalInfluxDB(tmp_path_factory.mktemp("influxdb"))
    try:
        server.start()
    except InfluxUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def influx_database(influxdb: LocalInfluxDB) -> Iterator[InfluxDatabase]:
    """A fresh, uniquely named database (= bucket) for one test, dropped afterwards."""
    influxdb.ensure_running()
    name = f"test_{uuid.uuid4().hex[:12]}"
    influxdb.create_database(name)
    yield InfluxDatabase(
        name=name, url=influxdb.url, token="recorder:recorder", org="-", bucket=name, server=influxdb
    )
    influxdb.ensure_running()
    influxdb.drop_database(name)
