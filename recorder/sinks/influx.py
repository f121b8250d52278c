"""Writing points to InfluxDB, synchronously, and deciding what a failure means.

We use `influxdb-client`'s v2 write API in synchronous mode and do batching and retries
ourselves: its background batching can lose points at exit, and we must know exactly which
readings were acknowledged before deleting them from the outbox. The v2 endpoint is served by
InfluxDB 2.x, 3.x, and 1.8+ (token `user:password`, bucket `database/retention`).

Failures are sorted into:

* `RetryLater`: the server or network is unavailable (connection errors, timeouts, 5xx, 429),
  or misconfigured in a way a human must fix (401/403 credentials, 404 unknown bucket). The
  points stay queued and we retry with backoff; configuration problems are logged loudly.
* `BadData`: 400 and 422, the server rejected the content. `send_batch` splits the batch to
  find the offending lines, parks those (kept, counted, logged once with the line) and writes the
  rest. Points are idempotent, so re-sending the good half of a batch is harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from recorder.config import Settings, redact

log = logging.getLogger(__name__)


class RetryLater(Exception):
    def __init__(self, message: str, *, configuration: bool = False) -> None:
        super().__init__(message)
        self.configuration = configuration


class BadData(Exception):
    pass


class LineWriter(Protocol):
    def write(self, lines: list[str]) -> None: ...

    def close(self) -> None: ...


class InfluxWriter:
    def __init__(self, settings: Settings, *, timeout_seconds: float = 10.0, gzip: bool = True) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.settings = settings
        self._client = InfluxDBClient(
            url=settings.influx_url,
            token=settings.influx_token.reveal(),
            org=settings.influx_org,
            timeout=int(timeout_seconds * 1000),
            enable_gzip=gzip,  # worth it over a network; backfill on the same host turns it off
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, lines: list[str]) -> None:
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            self._write_api.write(
                bucket=self.settings.influx_bucket,
                org=self.settings.influx_org,
                # One string, not the list: the client walks a list item by item in Python
                # (about 1 µs a line, a tenth of a backfill's cost); a joined string is one step.
                record="\n".join(lines),
                write_precision=WritePrecision.MS,  # type: ignore[arg-type]  # the stubs want the class
            )
        except ApiException as error:
            raise classify(error.status, _body(error)) from None
        except Exception as error:  # urllib3 connection errors, timeouts, OSError...
            raise RetryLater(
                f"cannot reach InfluxDB at {self.settings.influx_url}: {_short(error)}"
            ) from None

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


def classify(status: int | None, body: str) -> Exception:
    detail = redact(body.strip())[:300]
    if status in (400, 422):
        return BadData(f"InfluxDB rejected the data ({status}): {detail}")
    if status == 413:
        return BadData(f"InfluxDB refused the batch as too large (413): {detail}")
    if status in (401, 403):
        return RetryLater(
            f"InfluxDB refused the credentials ({status}): check --influx-token/--influx-org",
            configuration=True,
        )
    if status == 404:
        return RetryLater(
            f"InfluxDB does not know the bucket/database (404): check --influx-bucket ({detail})",
            configuration=True,
        )
    if status is not None and 400 <= status < 500 and status != 429:
        return RetryLater(f"InfluxDB answered {status}: {detail}", configuration=True)
    return RetryLater(f"InfluxDB is unavailable ({status}): {detail}")


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
