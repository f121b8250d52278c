"""The backfill's writer thread: batches of lines to InfluxDB while decoding goes on.

`WriterThread` takes batches from a small queue (the loop blocks when it is full, which bounds
memory), writes each through the `LineWriter`, bisects a batch with refused lines so that only
those are left out (and counted), waits out an unavailable InfluxDB for a bounded time, and ends
the backfill at once on a configuration problem (credentials, database). A stop request ends
every wait within a fraction of a second (`Stopped`).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING

from recorder.errors import RecorderError
from recorder.sinks.influx import BadData, LineWriter, RetryLater, send_batch

if TYPE_CHECKING:
    from recorder.backfill.loop import Summary

log = logging.getLogger(__name__)


class Stopped(Exception):
    """Raised inside the run when a stop was asked for; `Backfill.run` turns it into Interrupted."""


class EnergyLines(list[str]):
    """A batch of `tigo_energy` lines (counted apart from the readings' points)."""


class WriterThread(threading.Thread):
    """Sends queued batches through the `LineWriter`; decoding continues meanwhile.

    Waits out an unavailable InfluxDB (bounded by `give_up_after`), but not a configuration
    problem (credentials, database): that ends the backfill at once, since nobody is there to
    fix it while it waits. A stop request ends every wait within a fraction of a second.
    """

    def __init__(
        self, writer: LineWriter, summary: Summary, stop: threading.Event, give_up_after: float = 600.0
    ) -> None:
        super().__init__(name="backfill-writer", daemon=True)
        self.writer = writer
        self.summary = summary
        self.stop = stop
        self.queue: queue.Queue[list[str] | None] = queue.Queue(maxsize=4)
        self.give_up_after = give_up_after
        self.error: str | None = None
        self._closed = threading.Event()

    def run(self) -> None:
        try:
            while not self._closed.is_set():
                try:
                    batch = self.queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                if batch is None:
                    return
                if self.error is None and not self.stop.is_set():
                    self._send(batch)
        except Exception as error:  # a bug must end the backfill with a message, not hang it
            log.exception("the backfill's writer failed")
            self.error = f"writing to InfluxDB failed: {error}"

    def _send(self, lines: list[str]) -> None:
        started = time.monotonic()
        delay = 1.0
        # Lines InfluxDB refused (send_batch has logged each with the reason), by index: a retry
        # that interrupts the bisection sends the batch again without them, and each is counted
        # once, when the batch is done.
        rejected: set[int] = set()

        def reject(index: int, _line: str, _error: str) -> None:
            rejected.add(index)

        while True:
            try:
                written = None
                if not rejected:
                    with contextlib.suppress(BadData):
                        self.writer.write(lines)
                        written = len(lines)
                if written is None:  # bad lines in there: send_batch bisects and parks them
                    remaining = [(index, line) for index, line in enumerate(lines) if index not in rejected]
                    written = len(send_batch(self.writer, remaining, reject).written)
                if isinstance(lines, EnergyLines):
                    self.summary.energy_points += written
                else:
                    self.summary.points += written
                self.summary.rejected += len(rejected)
                return
            except RetryLater as error:
                if error.configuration:
                    self.error = str(error)
                    return
                # Re-sending lines that already went in is harmless: points are idempotent.
                if time.monotonic() - started > self.give_up_after:
                    self.summary.rejected += len(rejected)
                    self.error = (
                        f"{error}; gave up after {self.give_up_after:.0f} s (backfill is safe to re-run)"
                    )
                    return
                log.warning("%s; retrying in %.0f s", error, delay)
                if self.stop.wait(delay):
                    return
                delay = min(delay * 2, 30.0)

    def submit(self, lines: list[str] | None) -> None:
        """Queue a batch (None: the end). Raises RecorderError after a write error, Stopped on a stop."""
        while True:
            if self.error is not None:
                raise RecorderError(self.error)
            if self.stop.is_set():
                raise Stopped
            try:
                self.queue.put(lines, timeout=0.2)
                return
            except queue.Full:
                if not self.is_alive():
                    raise RecorderError("the backfill's writer ended unexpectedly") from None

    def finish(self) -> None:
        """Wait until everything queued is written (or a stop is asked for)."""
        self.submit(None)
        while self.is_alive():
            self.join(0.2)
            if self.stop.is_set():
                raise Stopped
        if self.error is not None:
            raise RecorderError(self.error)

    def close(self, wait: float = 1.0) -> None:
        """End the thread without waiting for queued batches (after an error or a stop)."""
        self._closed.set()
        self.join(wait)  # a request in flight may outlast this; the thread is a daemon
