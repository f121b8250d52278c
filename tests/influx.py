"""Real, throwaway time-series servers for tests: InfluxDB 1.6 and VictoriaMetrics, on loopback.

* `LocalInfluxDB`: a plain `influxd` (Debian's InfluxDB 1.6.7, what `apt install influxdb` gives
  on Debian 12 and Raspberry Pi OS), nothing in front of it. The recorder writes to it through
  the native 1.x `/write` API (`--influx-api auto` picks it from `/ping`); tests read back with
  InfluxQL. With `auth=True` it runs with `[http] auth-enabled = true` and an admin user, for the
  wrong-password tests.
* `LocalVictoriaMetrics`: Debian's `victoria-metrics`, the tested target of the v2 write API
  (`/api/v2/write`); tests read back through its export API.

Used as a pytest plugin (`pytest_plugins = ["tests.influx"]`): the session fixture `influxdb`
starts one influxd, `influx_database` gives each test its own fresh database, and
`victoria_metrics` starts one VictoriaMetrics per test module. `scripts/influxdb-local` starts the
same influxd for the quickstart; keep the two config templates in step. Every process is started
in its own session and stopped by its own pid (never by name: other people's servers run here).
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
from collections import defaultdict
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
  auth-enabled = {auth_enabled}
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

# /usr/sbin is often missing from a non-root PATH.
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
_PACKAGES = {"influxd": "influxdb", "victoria-metrics": "victoria-metrics"}
_STARTUP_TIMEOUT = 30.0
ADMIN = ("admin", "admin-secret")  # the admin user of an auth-enabled instance


class InfluxUnavailable(RuntimeError):
    """A server program is not installed, or did not come up."""


def find_program(name: str) -> str:
    """Path of influxd or victoria-metrics; InfluxUnavailable naming the Debian package if missing."""
    found = shutil.which(name, path=_SEARCH_PATH)
    if found is None:
        raise InfluxUnavailable(
            f"{name} not found: these tests need a real server. "
            f"Install it with: apt-get install {_PACKAGES[name]}"
        )
    return found


def find_programs() -> dict[str, str]:
    """Paths of influxd and victoria-metrics; InfluxUnavailable naming the packages if any is missing."""
    found = {name: shutil.which(name, path=_SEARCH_PATH) for name in _PACKAGES}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        packages = " ".join(_PACKAGES[name] for name in missing)
        raise InfluxUnavailable(
            f"{' and '.join(missing)} not found: these tests need real servers. "
            f"Install with: apt-get install {packages}"
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


class _Server:
    """A server process started in its own session, waited for, stopped by its own pid."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The process id while it runs (benchmarks read its CPU time)."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop()

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

    def _stop(self) -> None:
        _stop_group(self._process)
        self._process = None

    def _wait_until(self, ready: Callable[[], bool], what: str, logs: list[Path]) -> None:
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while True:
            if ready():
                return
            exited = self._process is None or self._process.poll() is not None
            if exited or time.monotonic() > deadline:
                reason = "the process exited" if exited else f"gave up after {_STARTUP_TIMEOUT:.0f} s"
                tails = "\n".join(f"--- {log.name} (last lines) ---\n{_tail(log)}" for log in logs)
                self._stop()
                raise InfluxUnavailable(f"waiting for {what}: {reason}\n{tails}")
            time.sleep(0.05)


class LocalInfluxDB(_Server):
    """A plain influxd 1.6 on free loopback ports, all its files in `directory`.

    `auth=True`: authentication on (`[http] auth-enabled = true`) with the admin user `ADMIN`;
    the fixture's own InfluxQL then logs in as that user.
    """

    def __init__(self, directory: Path, *, auth: bool = False) -> None:
        super().__init__(directory)
        self.auth = auth
        self.http_port, self.rpc_port = free_ports(2)
        self.influxd_conf = self.directory / "influxd.conf"
        self.influxd_log = self.directory / "influxd.log"
        self.influxd_conf.write_text(
            INFLUXD_CONF.format(
                dir=self.directory,
                http_port=self.http_port,
                rpc_port=self.rpc_port,
                auth_enabled="true" if auth else "false",
            )
        )

    @property
    def url(self) -> str:
        """influxd's HTTP API: what the recorder is given (1.x /write, InfluxQL /query, /ping)."""
        return f"http://127.0.0.1:{self.http_port}"

    influxd_url = url

    @property
    def influxd_pid(self) -> int | None:
        return self.pid

    @property
    def influxd_running(self) -> bool:
        return self.running

    # --- processes -------------------------------------------------------------------------------

    def start(self) -> None:
        if self.running:
            return
        self._process = self._spawn(
            [find_program("influxd"), "-config", str(self.influxd_conf)], self.influxd_log
        )
        self._wait_until(
            lambda: _http_status(f"{self.url}/ping") == 204,
            f"influxd to answer /ping on {self.url}",
            [self.influxd_log],
        )
        if self.auth:
            # The first user may be created without credentials, and must be an admin.
            self._influxql(
                f"CREATE USER {ADMIN[0]} WITH PASSWORD '{ADMIN[1]}' WITH ALL PRIVILEGES",
                method="POST",
                login=False,
                tolerate="user already exists",
            )

    def stop(self) -> None:
        self._stop()

    start_influxd = start
    stop_influxd = stop

    def ensure_running(self) -> None:
        """Restart influxd if a test stopped it (and did not restart it), keeping port and data."""
        if not self.running:
            self.start()

    # --- InfluxQL --------------------------------------------------------------------------------

    def create_database(self, name: str) -> None:
        self._influxql(f"CREATE DATABASE {_identifier(name)}", method="POST")

    def drop_database(self, name: str) -> None:
        self._influxql(f"DROP DATABASE {_identifier(name)}", method="POST")

    def create_user(self, name: str, password: str, *, write_to: str | None = None) -> None:
        """A non-admin user (auth-enabled instances), with WRITE on one database if given."""
        self._influxql(f"CREATE USER {_identifier(name)} WITH PASSWORD '{password}'", method="POST")
        if write_to is not None:
            self._influxql(f"GRANT WRITE ON {_identifier(write_to)} TO {_identifier(name)}", method="POST")

    def write_v1(self, database: str, lines: bytes) -> None:
        """Line protocol (ms timestamps) straight to influxd's own /write, past the recorder."""
        request = urllib.request.Request(
            f"{self.url}/write?{urllib.parse.urlencode({'db': database, 'precision': 'ms', **self._login()})}",
            data=lines,
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

    def _login(self) -> dict[str, str]:
        return {"u": ADMIN[0], "p": ADMIN[1]} if self.auth else {}

    def _influxql(
        self,
        q: str,
        database: str | None = None,
        method: str = "GET",
        *,
        login: bool = True,
        tolerate: str | None = None,
    ) -> list[dict[str, Any]]:
        parameters = {"q": q, "epoch": "ms", **(self._login() if login else {})}
        if database is not None:
            parameters["db"] = database
        url = f"{self.url}/query?{urllib.parse.urlencode(parameters)}"
        request = urllib.request.Request(url, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace").strip()
            raise RuntimeError(f"InfluxQL {q!r} failed: HTTP {error.code}: {detail}") from None
        results: list[dict[str, Any]] = body.get("results", [])
        for result in results:
            if "error" in result and not (tolerate and tolerate in result["error"]):
                raise RuntimeError(f"InfluxQL {q!r} failed: {result['error']}")
        if not results:
            raise RuntimeError(f"InfluxQL {q!r}: no results in {body!r}")
        return results


class LocalVictoriaMetrics(_Server):
    """Debian's victoria-metrics on a free loopback port, its data in `directory`.

    Started with what the README recommends for the recorder: a retention long enough for
    replayed years (`-retentionPeriod=100y`) and de-duplication of identical timestamps
    (`-dedup.minScrapeInterval=1ms`), so a point written twice is stored once, as in InfluxDB.
    """

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        (self.port,) = free_ports(1)
        self.log = self.directory / "victoria-metrics.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.running:
            return
        command = [
            find_program("victoria-metrics"),
            f"-storageDataPath={self.directory / 'data'}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-retentionPeriod=100y",
            "-dedup.minScrapeInterval=1ms",
            "-loggerLevel=WARN",
            "-search.latencyOffset=0s",
        ]
        self._process = self._spawn(command, self.log)
        self._wait_until(
            lambda: _http_status(f"{self.url}/health") == 200,
            f"victoria-metrics to answer /health on {self.url}",
            [self.log],
        )

    def stop(self) -> None:
        self._stop()

    def ensure_running(self) -> None:
        if not self.running:
            self.start()

    def export(self, match: str = '{__name__=~"tigo_.*"}') -> list[dict[str, Any]]:
        """Every raw sample of the matching series (export API), after making recent writes visible."""
        urllib.request.urlopen(
            urllib.request.Request(f"{self.url}/internal/force_flush", method="GET"), timeout=30
        ).close()
        parameters = urllib.parse.urlencode({"match[]": match, "start": "0"})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{parameters}", timeout=60) as response:
            return [json.loads(line) for line in response.read().splitlines() if line.strip()]

    def points(self, measurement: str, match_labels: str = "") -> list[dict[str, Any]]:
        """The export folded back into points: one dict per (labels, time) with every field, like
        `LocalInfluxDB.query("SELECT * ...")` returns them (`time` in ms; fields as numbers).

        VictoriaMetrics stores each field as its own series named `{measurement}_{field}`.
        """
        prefix = f"{measurement}_"
        selector = f'{{__name__=~"{prefix}.*"{"," + match_labels if match_labels else ""}}}'
        folded: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(dict)
        for series in self.export(selector):
            labels = dict(series["metric"])
            field = labels.pop("__name__")[len(prefix) :]
            key = tuple(sorted(labels.items()))
            for value, at in zip(series["values"], series["timestamps"], strict=True):
                point = folded[(key, at)]
                if field in point:
                    raise AssertionError(f"{field} stored twice for {labels} at {at}")
                point.update(labels, time=at)
                point[field] = value
        return list(folded.values())


def _identifier(name: str) -> str:
    """An InfluxQL double-quoted identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- pytest fixtures -----------------------------------------------------------------------------


@dataclass(frozen=True)
class InfluxDatabase:
    """One test's database, with the settings a recorder needs to write to it."""

    name: str
    url: str
    token: str
    org: str
    bucket: str
    server: LocalInfluxDB


def _started(server: _Server) -> None:
    try:
        server.start()
    except InfluxUnavailable as error:
        # Fail rather than skip: a skipped server test would look like a passing one.
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInfluxDB]:
    """One influxd for the whole session."""
    server = LocalInfluxDB(tmp_path_factory.mktemp("influxdb"))
    _started(server)
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


@pytest.fixture(scope="module")
def influxdb_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInfluxDB]:
    """An influxd with authentication on (admin `ADMIN`), for one test module."""
    server = LocalInfluxDB(tmp_path_factory.mktemp("influxdb-auth"), auth=True)
    _started(server)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def victoria_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalVictoriaMetrics]:
    """A VictoriaMetrics for one test module (tests keep apart by their own label values)."""
    server = LocalVictoriaMetrics(tmp_path_factory.mktemp("victoria-metrics"))
    _started(server)
    try:
        yield server
    finally:
        server.stop()
