"""`recorder run`'s sender thread: readings from memory, then the outbox, to InfluxDB.

`Sender` takes the readings that are ready to send from memory (`InFlight`) first, then rows of
the outbox, writes them in batches and forgets them (deletes their outbox rows) once InfluxDB has
acknowledged the write; it backs off while InfluxDB is down, parks lines InfluxDB refuses, and
also sends the daily energy and health points. The durability rules it works under, and the
loop that feeds it, are in `recorder.run.loop`'s docstring. It never blocks the reader.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path

from recorder.config import Settings, redact
from recorder.diskspace import RETRY_EVERY, DiskSpace, is_disk_full
from recorder.energy import DayTotals
from recorder.reading import Reading
from recorder.run.health import Health
from recorder.run.latency import LatencyProbe
from recorder.sinks.influx import BadData, BatchResult, LineWriter, RetryLater, send_batch
from recorder.sinks.points import PointFormatter, PointIdentity, energy_line, point_identity, recorder_line
from recorder.storage.inflight import InFlight, InFlightReading
from recorder.storage.outbox import Outbox, PendingReading
from recorder.storage.state import Labels, StateStore

log = logging.getLogger(__name__)

LABEL_REFRESH_EVERY = 60.0


class Sender(threading.Thread):
    """Writes readings to InfluxDB: from memory first (fresh, bounded), then from the outbox."""

    def __init__(
        self,
        inflight: InFlight,
        outbox: Outbox,
        store: StateStore,
        writer: LineWriter,
        settings: Settings,
        probe: LatencyProbe,
        disk: DiskSpace | None = None,
    ) -> None:
        super().__init__(name="sender", daemon=True)
        self.disk = disk or DiskSpace()
        self.database = database_path(store)
        self._outbox_paused_until = 0.0  # the outbox's rows could not be deleted: disk full
        self.inflight = inflight
        self.outbox = outbox
        self.store = store
        self.writer = writer
        self.settings = settings
        self.probe = probe
        self.wake = threading.Event()
        self.stop_requested = threading.Event()
        # Set when the outbox may hold ready rows (at start, after commits, releases, expiry);
        # cleared when a look found none, so an empty outbox is not queried every second.
        self.outbox_ready = threading.Event()
        self.outbox_ready.set()
        self.written = 0
        self.parked = 0
        self.write_errors = 0
        self.last_write_at: float | None = None
        self.last_error: str | None = None
        self.idle = threading.Event()
        self._labels: dict[bytes, Labels] = {}
        self._labels_loaded = 0.0
        self._points = PointFormatter(self._identity)
        self._backoff = 0.0
        self._retry_at = 0.0
        self._health: Health | None = None
        self._health_lock = threading.Lock()
        self._energy: dict[tuple[object, date], DayTotals] = {}  # newest totals not yet written
        self._energy_lock = threading.Lock()
        self.refresh_labels = threading.Event()

    def submit_energy(self, days: Iterable[DayTotals]) -> None:
        with self._energy_lock:
            for totals in days:
                self._energy[(totals.key, totals.day)] = totals
        self.wake.set()

    def unsent_energy_days(self) -> set[date]:
        with self._energy_lock:
            return {day for _, day in self._energy}

    def submit_health(self, health: Health) -> None:
        with self._health_lock:
            self._health = health
        self.wake.set()

    def run(self) -> None:
        while True:
            self.wake.wait(self.settings.flush_interval)
            self.wake.clear()
            if time.monotonic() < self._retry_at:
                if self.stop_requested.is_set():
                    return
                continue
            try:
                more = self._send_some()
                self._send_energy()
                self._send_health()
            except RetryLater as error:
                self._failed(error)
                more = False
            except Exception as error:
                if not is_disk_full(error):  # a bug must not silently stop sending: log, go on
                    log.exception("sender: unexpected error; retrying")
                else:  # parking a rejected point failed: the batch waits
                    self.disk.failed(self.database, "points InfluxDB rejected", "the batch is retried")
                self._retry_at = time.monotonic() + (RETRY_EVERY if is_disk_full(error) else 5)
                more = False
            if more:
                self.wake.set()
                continue
            self.idle.set()
            if self.stop_requested.is_set():
                return

    def _send_some(self) -> bool:
        """One batch. Returns True when there may be more to send."""
        self.idle.clear()
        self._refresh_labels()
        limit = self.settings.batch_size
        entries = self.inflight.take(limit)
        rows: list[PendingReading] = []
        try:
            rows = self._outbox_rows(limit - len(entries))
            if not entries and not rows:
                return False
            result = self._write(entries, rows)
        except BaseException:
            self.inflight.give_back(entries)
            if rows:  # still in the outbox: look again at the next attempt, commit or no commit
                self.outbox_ready.set()
            raise
        now = time.monotonic()
        written = set(result.written)
        # Every taken reading was written or parked: forget it, and delete the rows of those the
        # reader committed while they were on their way.
        committed = self.inflight.finish(entries)
        sent_rows = [row for index, row in enumerate(rows, len(entries)) if index in written]
        self._delete_rows(committed, [row.id for row in sent_rows])
        self.probe.delivered((entry.arrived for index, entry in enumerate(entries) if index in written), now)
        self.probe.acknowledged(sent_rows, now)
        self.written += len(result.written)
        self.parked += result.parked
        self.last_write_at = now
        if self._backoff:
            log.info("InfluxDB accepts writes again")
        self._backoff = 0.0
        self.last_error = None
        return len(entries) + len(rows) == limit

    def _delete_rows(self, committed: list[Reading], ids: list[int]) -> None:
        """Delete the outbox rows of what InfluxDB acknowledged. On a full disk even a delete can
        fail (the WAL must grow): the rows stay and are sent again later, and until the next
        attempt the outbox is left alone, so that readings from memory keep going out."""
        try:
            self.outbox.acknowledge_readings(committed)
            self.outbox.acknowledge(ids)
        except Exception as error:
            if not is_disk_full(error):
                raise
            self.disk.failed(
                self.database,
                "the outbox (deleting rows InfluxDB acknowledged)",
                "those rows are sent again later; readings in memory keep going to InfluxDB",
            )
            self._outbox_paused_until = time.monotonic() + RETRY_EVERY
            self.outbox_ready.set()

    def _outbox_rows(self, limit: int) -> list[PendingReading]:
        if limit <= 0 or not self.outbox_ready.is_set() or time.monotonic() < self._outbox_paused_until:
            return []
        self.outbox_ready.clear()  # before looking: a commit made meanwhile sets it again
        try:
            rows = self.outbox.next_batch(limit)
        except BaseException:
            self.outbox_ready.set()
            raise
        if len(rows) == limit:
            self.outbox_ready.set()
        return rows

    def _write(self, entries: list[InFlightReading], rows: list[PendingReading]) -> BatchResult:
        """Send memory entries (indices 0..) and outbox rows (after them) in one batch."""
        lines = self._points.lines([entry.reading for entry in entries] + [row.reading for row in rows])
        items = list(enumerate(lines))
        parked: list[InFlightReading] = []

        def park(index: int, line: str, error: str) -> None:
            if index < len(entries):
                self._park(None, line, error)
                parked.append(entries[index])
            else:
                self._park(rows[index - len(entries)].id, line, error)

        try:
            result = send_batch(self.writer, items, park)
        except BaseException:
            # Parked ones are kept aside for good, whatever happens to the rest of the batch.
            self.outbox.acknowledge_readings(self.inflight.finish(parked))
            raise
        return result

    def _send_energy(self) -> None:
        """The newest daily totals, each rewriting its day's `tigo_energy` point."""
        with self._energy_lock:
            due = dict(self._energy)
        if not due:
            return
        lines = [
            energy_line(
                self._identity(*totals.key), totals.day_start_ms, totals.energy_wh, totals.uncovered_seconds
            )
            for totals in due.values()
        ]
        try:
            self.writer.write(lines)
        except BadData as error:  # not expected from our own fields; said, and not retried forever
            log.error(
                "InfluxDB rejected daily energy points (%s); they are sent again at the next checkpoint",
                error,
            )
        with self._energy_lock:
            for key, totals in due.items():
                if self._energy.get(key) is totals:
                    del self._energy[key]

    def _send_health(self) -> None:
        with self._health_lock:
            health, self._health = self._health, None
        if health is None or health.at is None:
            return
        values = dict(health.values)
        values.update(points_written=self.written, points_parked=self.parked, write_errors=self.write_errors)
        source = str(values.pop("source_name", ""))
        self.writer.write([recorder_line(source, values, health.at, self.settings.site)])

    def _failed(self, error: RetryLater) -> None:
        self.write_errors += 1
        message = redact(str(error))
        self._backoff = min(max(self._backoff * 2, 1.0), 60.0)
        self._retry_at = time.monotonic() + self._backoff
        if message != self.last_error:
            level = logging.ERROR if error.configuration else logging.WARNING
            log.log(
                level,
                "%s; readings are kept in the outbox (after at most %g s in memory) and retried "
                "(next in %.0f s)",
                message,
                self.settings.commit_interval,
                self._backoff,
            )
        self.last_error = message

    def _park(self, row_id: int | None, line: str, error: str) -> None:
        self.outbox.park(row_id, line, redact(error), _utc_now_for_parking())

    def _refresh_labels(self) -> None:
        now = time.monotonic()
        if self.refresh_labels.is_set() or now - self._labels_loaded > LABEL_REFRESH_EVERY:
            self.refresh_labels.clear()
            self._labels = self.store.labels()
            self._labels_loaded = now
            self._points.forget_tags()

    def _identity(self, gateway_id: int, node_id: int, long_address: bytes | None) -> PointIdentity:
        """The tags of an optimizer's points (readings and daily energy alike)."""
        return point_identity(gateway_id, node_id, long_address, self._labels, self.settings.site)


def database_path(store: StateStore) -> Path:
    """The state database's file (for messages about disk space); "." for one in memory."""
    database = store.engine.url.database
    return Path(database) if database and database != ":memory:" else Path(".")


def _utc_now_for_parking() -> datetime:
    # Parking is bookkeeping about *when we gave up*, not data time: the wall clock is right.
    return datetime.now(UTC)
