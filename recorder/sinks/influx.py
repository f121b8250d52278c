"""Writing points to InfluxDB (1.x, 2.x, 3.x) or VictoriaMetrics, and deciding what a failure means.

Theory of operation
-------------------
One writer (`InfluxWriter`, a `LineWriter`) serves `recorder run`'s sender and `recorder
backfill`'s writer thread. It writes synchronously and does no batching or retrying of its own:
the callers batch, and they must know exactly which points were acknowledged (the run deletes a
reading from its outbox only then). Every HTTP exchange and every decision about an answer is
made here, whichever API carries the points.

Two write APIs carry the same line protocol (millisecond timestamps):

* **v1**, `POST /write?db=DATABASE&rp=RETENTION&precision=ms`: InfluxDB 1.x's own endpoint, the
  only one 1.6/1.7 have (Debian 12 and Raspberry Pi OS ship 1.6.7). InfluxDB 1.8, 2.x and 3.x
  and VictoriaMetrics serve it too. Sent with urllib3 (which comes with influxdb-client). The
  bucket setting gives the database and, after a slash, the retention policy (`tigo/autogen`);
  a `user:password` token is sent as HTTP Basic credentials, any other token as
  `Authorization: Token ...` (InfluxDB 1.8+/2.x/3.x).
* **v2**, `POST /api/v2/write?bucket=&org=&precision=ms`: InfluxDB 2.x/3.x, 1.8+ (token
  `user:password`, bucket `database/retention`) and VictoriaMetrics, through influxdb-client.

`--influx-api auto` (the default) asks the server on first use: `GET /ping` answers with an
`X-Influxdb-Version` header on every InfluxDB; a version starting with `1.` picks v1, anything
else (2.x, 3.x, or no header: VictoriaMetrics) picks v2. A server that cannot be reached is
asked again on the next attempt, so `run` can start while InfluxDB is down.

Failures are sorted into:

* `RetryLater`: the server or network is unavailable (connection errors, timeouts, 5xx, 429):
  the points stay queued and the caller retries with backoff. With `configuration=True` a human
  must fix something (401/403 credentials, 404 unknown bucket/database, an unknown retention
  policy): `run` keeps retrying, loudly, as a service should; `backfill` stops at once.
* `BadData`: 400/413/422, the server rejected the content. `send_batch` splits the batch to
  find the offending lines, parks those (kept, counted, logged once with the line) and writes the
  rest. Points are idempotent, so re-sending the good half of a batch is harmless.

A URL that is not `http(s)://HOST[:PORT][/path]` is refused when the writer is made
(`ConfigError`): it can never work, so nothing waits for it.
"""

from __future__ import annotations

import contextlib
import gzip as gzip_module
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TextIO
from urllib.parse import quote, urlsplit

from recorder.config import Settings, redact
from recorder.errors import ConfigError

if TYPE_CHECKING:
    import urllib3

log = logging.getLogger(__name__)

API_CHOICES = ("auto", "v1", "v2")


class RetryLater(Exception):
    def __init__(self, message: str, *, configuration: bool = False) -> None:
        super().__init__(message)
        self.configuration = configuration


class BadData(Exception):
    pass


class LineWriter(Protocol):
    """Where points go. `write([])` sends no point but checks that a write would be accepted
    (server reachable, credentials, database): the backfill's fail-fast check before it starts."""

    def write(self, lines: list[str]) -> None: ...

    def close(self) -> None: ...


def check_url(url: str) -> str:
    """The InfluxDB URL without a trailing slash; ConfigError naming the setting if unusable."""
    expected = "expected http://HOST:PORT or https://HOST[:PORT], e.g. http://localhost:8086"
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError(f"--influx-url: {url!r} is not a usable URL ({expected})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--influx-url: {url!r} is not a usable URL ({expected})")
    if parts.query or parts.fragment:
        raise ConfigError(f"--influx-url: {url!r} must not have a query or fragment ({expected})")
    return url.strip().rstrip("/")


def choose_api(version: str | None) -> str:
    """v1 for InfluxDB 1.x (its /ping says `X-Influxdb-Version: 1.6.7`), else v2."""
    return "v1" if version is not None and version.lstrip("v").startswith("1.") else "v2"


class InfluxWriter:
    """The one writer to InfluxDB/VictoriaMetrics, v1 or v2 write API (see the module docstring)."""

    def __init__(self, settings: Settings, *, timeout_seconds: float = 10.0, gzip: bool = True) -> None:
        self.settings = settings
        self.url = check_url(settings.influx_url)
        self.api: str | None = None if settings.influx_api == "auto" else settings.influx_api
        self.server_version: str | None = None
        self._timeout = timeout_seconds
        self._gzip = gzip  # worth it over a network; backfill on the same host turns it off
        self._http: urllib3.PoolManager | None = None
        self._client: Any = None  # influxdb-client, made on first v2 write
        self._write_api: Any = None

    # --- the LineWriter interface -------------------------------------------------------------

    def write(self, lines: list[str]) -> None:
        api = self.api or self._detect()
        if not lines:
            # The probe: reachable, credentials, database. A server may refuse the empty body
            # itself (BadData); it has checked the rest by then.
            with contextlib.suppress(BadData):
                self._send(api, "")
            return
        # One string, not the list: influxdb-client walks a list item by item in Python
        # (about 1 µs a line, a tenth of a backfill's cost); a joined string is one step.
        self._send(api, "\n".join(lines))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._http is not None:
            self._http.clear()
            self._http = None

    # --- the two APIs ---------------------------------------------------------------------------

    def _send(self, api: str, body: str) -> None:
        if api == "v1":
            self._write_v1(body)
        else:
            self._write_v2(body)

    def _write_v1(self, body: str) -> None:
        database, _, retention = self.settings.influx_bucket.partition("/")
        target = f"{self.url}/write?db={quote(database, safe='')}&precision=ms"
        if retention:
            target += f"&rp={quote(retention, safe='')}"
        data = body.encode("utf-8")
        headers = {"Content-Type": "text/plain; charset=utf-8", **self._auth_headers()}
        if self._gzip and len(data) > 1024:
            data = gzip_module.compress(data, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        status, text = self._request("POST", target, data, headers)
        if status not in (200, 204):
            raise classify(status, text)

    def _write_v2(self, body: str) -> None:
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException

        if self._write_api is None:
            from influxdb_client.client.influxdb_client import InfluxDBClient
            from influxdb_client.client.write_api import SYNCHRONOUS

            self._client = InfluxDBClient(
                url=self.url,
                token=self.settings.influx_token.reveal(),
                org=self.settings.influx_org,
                timeout=int(self._timeout * 1000),
                enable_gzip=self._gzip,
            )
            self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        try:
            self._write_api.write(
                bucket=self.settings.influx_bucket,
                org=self.settings.influx_org,
                record=body,
                write_precision=WritePrecision.MS,
            )
        except ApiException as error:
            raise classify(error.status, _body(error)) from None
        except Exception as error:  # urllib3 connection errors, timeouts, OSError...
            raise self._unreachable(error) from None

    # --- HTTP, auto-detection ---------------------------------------------------------------------

    def _detect(self) -> str:
        """Ask /ping which InfluxDB this is (RetryLater while it cannot be reached)."""
        status, _text, version = self._ping()
        if status >= 500:
            raise classify(status, _text)
        self.server_version = version
        self.api = choose_api(version)
        what = f"InfluxDB {version}" if version else "a server without an InfluxDB version (VictoriaMetrics?)"
        log.info(
            "%s at %s: writing through the %s API (--influx-api auto)",
            what,
            self.url,
            "1.x /write" if self.api == "v1" else "v2 /api/v2/write",
        )
        return self.api

    def _ping(self) -> tuple[int, str, str | None]:
        response = self._response("GET", f"{self.url}/ping", None, self._auth_headers())
        version = response.headers.get("X-Influxdb-Version")
        return response.status, response.data.decode("utf-8", "replace"), version

    def _request(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, str]:
        response = self._response(method, url, body, headers)
        return response.status, response.data.decode("utf-8", "replace")

    def _response(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> urllib3.BaseHTTPResponse:
        import urllib3

        if self._http is None:
            self._http = urllib3.PoolManager(
                num_pools=1,
                maxsize=1,
                retries=False,  # our callers retry, with backoff and an outbox
                timeout=urllib3.Timeout(connect=self._timeout, read=self._timeout),
            )
        try:
            return self._http.request(method, url, body=body, headers=headers)
        except Exception as error:  # urllib3 connection errors, timeouts, TLS, OSError...
            raise self._unreachable(error) from None

    def _auth_headers(self) -> dict[str, str]:
        token = self.settings.influx_token.reveal()
        if not token:
            return {}
        if ":" in token:  # InfluxDB 1.x user:password
            import urllib3

            return dict(urllib3.util.make_headers(basic_auth=token))
        return {"Authorization": f"Token {token}"}

    def _unreachable(self, error: Exception) -> RetryLater:
        return RetryLater(f"cannot reach InfluxDB at {self.url}: {_short(error)}")


def classify(status: int | None, body: str) -> Exception:
    """What an HTTP answer other than success means (for both APIs)."""
    detail = redact(_message(body))[:300]
    if status in (400, 422):
        if "retention policy not found" in detail:
            return _configuration(f"InfluxDB has no such retention policy ({status}: {detail})", "bucket")
        return BadData(f"InfluxDB rejected the data ({status}): {detail}")
    if status == 413:
        return BadData(f"InfluxDB refused the batch as too large (413): {detail}")
    if status == 401:
        return _configuration(f"InfluxDB refused the credentials (401: {detail or 'unauthorized'})", "token")
    if status == 403:
        return _configuration(
            f"InfluxDB does not let these credentials write there (403: {detail or 'forbidden'})", "token"
        )
    if status == 404:
        return _configuration(
            f"InfluxDB does not know the bucket/database (404: {detail or 'not found'})", "bucket"
        )
    if "retention policy not found" in detail:  # 1.x answers 500 to an unknown policy
        return _configuration(f"InfluxDB has no such retention policy ({status}: {detail})", "bucket")
    if status is not None and 400 <= status < 500 and status != 429:
        return RetryLater(f"InfluxDB answered {status}: {detail}", configuration=True)
    return RetryLater(f"InfluxDB is unavailable ({status}): {detail}")


_FIX = {
    "token": "check --influx-token (RECORDER_INFLUX_TOKEN; user:password for InfluxDB 1.x)",
    "bucket": "check --influx-bucket (RECORDER_INFLUX_BUCKET; database[/retention] for InfluxDB 1.x) "
    "and that it exists",
}


def _configuration(what: str, setting: str) -> RetryLater:
    return RetryLater(f"{what}: {_FIX[setting]}", configuration=True)


def _message(body: str) -> str:
    """The error text of an InfluxDB answer (`{"error": "..."}` or `{"message": "..."}`), else the body."""
    text = body.strip()
    try:
        document = json.loads(text)
    except ValueError:
        return " ".join(text.split())
    if isinstance(document, dict):
        for key in ("error", "message"):
            if isinstance(document.get(key), str):
                return str(document[key])
    return text


def _body(error: Any) -> str:
    body = getattr(error, "body", None) or getattr(error, "reason", "") or ""
    return body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)


def _short(error: Exception) -> str:
    text = redact(str(error))
    marker = "Failed to establish a new connection: "  # urllib3 buries the reason after this
    if marker in text:
        text = text.split(marker, 1)[1]
    return text.strip(" )'\"")[:200]


class StdoutWriter:
    """`--dry-run`: print the line protocol instead of writing it."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, lines: list[str]) -> None:
        if lines:
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()

    def close(self) -> None:
        self._stream.flush()


@dataclass
class BatchResult:
    written: list[int]
    parked: int


def send_batch(
    writer: LineWriter,
    items: list[tuple[int, str]],
    park: Callable[[int, str, str], None],
) -> BatchResult:
    """Write `(row id, line)` pairs; returns the ids acknowledged. Raises RetryLater.

    On bad data the batch is halved until the offending lines stand alone; those are parked.
    """
    written: list[int] = []
    parked = 0
    pending = [items]
    while pending:
        chunk = pending.pop()
        try:
            writer.write([line for _, line in chunk])
        except BadData as error:
            if len(chunk) == 1:
                row_id, line = chunk[0]
                log.error(
                    "InfluxDB rejected a point; it is kept aside in the state database: %s | %s", error, line
                )
                park(row_id, line, str(error))
                parked += 1
            else:
                middle = len(chunk) // 2
                pending += [chunk[middle:], chunk[:middle]]
            continue
        written.extend(row_id for row_id, _ in chunk)
    return BatchResult(written, parked)
