"""`recorder run`: source -> decoder -> outbox (SQLite) -> InfluxDB, without losing a reading.

Two threads:

* the reader (this module's `Ingest.run`, on the main thread) reads the source, appends the raw
  bytes to the archive, decodes, and once per `flush_interval` commits the new readings to the
  outbox and identity changes to the state store, in that order, before anything is sent;
* the sender (`Sender`) takes ready rows from the outbox, writes them to InfluxDB in batches
  and deletes them only once InfluxDB acknowledged the write. While InfluxDB is down it backs
  off (1 s doubling to 60 s) and the outbox grows; when it comes back the outbox drains.

The sender never blocks the reader: a serial port's buffer holds about a second of bus
traffic, so a slow database must not stall reading.

Identity hold: readings of a node without a known barcode are committed as `held`; they are
released, tagged with the barcode valid at their measurement time, as soon as the mapping is
learned, or after `identity_hold` are written without a barcode (or dropped), as configured.
Times that decide this are source times, so a replay behaves like the live run it recorded.

Shutdown (SIGTERM/SIGINT or a finite source's end): the reader commits what it has, the sender
gets a few seconds to write, and whatever is left stays in the outbox for next time.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from recorder.archive import Archive
from recorder.config import Settings, redact
from recorder.live.latest import LatestReadings
from recorder.observer import GatewayLearned, MappingLearned, Observer, Output, Reading
from recorder.pipeline import DecodePipeline
from recorder.protocol.barcode import barcode_from_address
from recorder.sinks.influx import LineWriter, RetryLater, send_batch
from recorder.sinks.points import PointIdentity, optimizer_line, recorder_line
from recorder.sources import Source
from recorder.storage.outbox import Outbox, PendingReading
from recorder.storage.state import Labels, StateStore
from recorder.systemd import Notifier
from recorder.timestamps import to_millis

log = logging.getLogger(__name__)

HEALTH_EVERY = 10.0  # seconds (wall clock) between health snapshots
HOLD_CHECK_EVERY = 60.0
LABEL_REFRESH_EVERY = 60.0
SHUTDOWN_GRACE = 5.0
DEFAULT_DAYLIGHT = (10.0, 14.0)  # local hours we assume are daylight before we have learned them


class LatencyProbe:
    """From the arrival of the bytes completing a report to InfluxDB acknowledging its point.

    Durations go into 10 ms buckets up to two minutes (longer ones into the last bucket), so a
    day of readings costs a fixed few kilobytes and percentiles are exact to 10 ms.
    """

    BUCKET_SECONDS = 0.01
    BUCKETS = 12_000

    def __init__(self) -> None:
        # Keyed by measurement time in whole milliseconds: what the outbox stores and returns.
        self._arrivals: dict[tuple[int, int, int], float] = {}
        self._histogram = [0] * self.BUCKETS
        self.count = 0
        self._lock = threading.Lock()

    def arrived(self, readings: list[Reading], at: float) -> None:
        with self._lock:
            for reading in readings:
                self._arrivals[(reading.gateway_id, reading.node_id, to_millis(reading.measured_at))] = at
            if len(self._arrivals) > 200_000:  # readings that never get sent (held, dropped)
                self._arrivals = dict(list(self._arrivals.items())[-100_000:])

    def acknowledged(self, pending: list[PendingReading], at: float) -> None:
        with self._lock:
            for item in pending:
                arrived = self._arrivals.pop(
                    (item.gateway_id, item.node_id, to_millis(item.measured_at)), None
                )
                if arrived is not None:
                    bucket = min(int((at - arrived) / self.BUCKET_SECONDS), self.BUCKETS - 1)
                    self._histogram[bucket] += 1
                    self.count += 1

    def percentile(self, fraction: float) -> float | None:
        """Upper edge of the bucket holding the given fraction of samples, in seconds."""
        with self._lock:
            if not self.count:
                return None
            wanted = fraction * self.count
            seen = 0
            for bucket, count in enumerate(self._histogram):
                seen += count
                if seen >= wanted:
                    return (bucket + 1) * self.BUCKET_SECONDS
        return None

    def percentiles(self) -> tuple[float, float] | None:
        p50, p99 = self.percentile(0.50), self.percentile(0.99)
        return (p50, p99) if p50 is not None and p99 is not None else None


class DecodeWatch:
    """Warns when frames keep arriving in daylight but no power report decodes (a new format?).

    Daylight is learned from when reports were seen on recent days (local time); before that we
    assume 10:00-14:00, when the sun is up nearly everywhere people put panels.
    """

    def __init__(self, threshold: timedelta) -> None:
        self.threshold = threshold
        self.stalled = False
        self._last_report_at: datetime | None = None
        self._frames_at_last_report = 0
        self._reports = 0
        self._last_warning: datetime | None = None
        self._days: dict[str, list[float]] = {}

    def window(self) -> tuple[float, float]:
        recent = sorted(self._days)[-7:]
        if len(recent) < 2:
            return DEFAULT_DAYLIGHT
        first = statistics.median(self._days[day][0] for day in recent)
        last = statistics.median(self._days[day][1] for day in recent)
        return (first + 1.0, last - 1.0) if last - first > 3 else DEFAULT_DAYLIGHT

    def update(self, at: datetime, frames: int, power_reports: int) -> str | None:
        local = at.astimezone()
        hour = local.hour + local.minute / 60
        if power_reports > self._reports or self._last_report_at is None:
            if power_reports > self._reports:
                day = self._days.setdefault(local.date().isoformat(), [hour, hour])
                day[0], day[1] = min(day[0], hour), max(day[1], hour)
            self._reports = power_reports
            self._last_report_at = at
            self._frames_at_last_report = frames
            self.stalled = False
            return None
        start, end = self.window()
        silent = at - self._last_report_at
        busy = frames - self._frames_at_last_report > 100
        self.stalled = busy and silent >= self.threshold and start <= hour <= end
        if not self.stalled:
            return None
        if self._last_warning is not None and at - self._last_warning < self.threshold:
            return None
        self._last_warning = at
        minutes = int(silent.total_seconds() // 60)
        return (
            f"frames keep arriving ({frames - self._frames_at_last_report} since the last power report) but "
            f"no power report has decoded for {minutes} minutes of daylight: the controller's firmware may "
            "have changed the format. The raw bytes are in the archive; upgrade the recorder and backfill."
        )


@dataclass
class Health:
    values: dict[str, Any] = field(default_factory=dict)
    at: datetime | None = None


class Sender(threading.Thread):
    def __init__(
        self,
        outbox: Outbox,
        store: StateStore,
        writer: LineWriter,
        settings: Settings,
        probe: LatencyProbe,
    ) -> None:
        super().__init__(name="sender", daemon=True)
        self.outbox = outbox
        self.store = store
        self.writer = writer
        self.settings = settings
        self.probe = probe
        self.wake = threading.Event()
        self.stop_requested = threading.Event()
        self.written = 0
        self.parked = 0
        self.write_errors = 0
        self.last_write_at: float | None = None
        self.last_error: str | None = None
        self.idle = threading.Event()
        self._labels: dict[bytes, Labels] = {}
        self._labels_loaded = 0.0
        self._backoff = 0.0
        self._retry_at = 0.0
        self._health: Health | None = None
        self._health_lock = threading.Lock()
        self.refresh_labels = threading.Event()

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
                self._send_health()
            except RetryLater as error:
                self._failed(error)
                more = False
            except Exception:  # a bug must not silently stop sending: log and keep going
                log.exception("sender: unexpected error; retrying")
                self._retry_at = time.monotonic() + 5
                more = False
            if more:
                self.wake.set()
                continue
            self.idle.set()
            if self.stop_requested.is_set():
                return

    def _send_some(self) -> bool:
        """One batch. Returns True when there may be more ready rows."""
        self.idle.clear()
        self._refresh_labels()
        batch = self.outbox.next_batch(self.settings.batch_size)
        if not batch:
            return False
        items = [(item.id, self._line(item)) for item in batch]
        result = send_batch(self.writer, items, self._park)
        now = time.monotonic()
        written = set(result.written)
        self.outbox.acknowledge(result.written)
        self.probe.acknowledged([item for item in batch if item.id in written], now)
        self.written += len(result.written)
        self.parked += result.parked
        self.last_write_at = now
        if self._backoff:
            log.info("InfluxDB accepts writes again")
        self._backoff = 0.0
        self.last_error = None
        return len(batch) == self.settings.batch_size

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
                "%s; readings are kept in the outbox and retried (next in %.0f s)",
                message,
                self._backoff,
            )
        self.last_error = message

    def _park(self, row_id: int, line: str, error: str) -> None:
        self.outbox.park(row_id, line, redact(error), _utc_now_for_parking())

    def _refresh_labels(self) -> None:
        now = time.monotonic()
        if self.refresh_labels.is_set() or now - self._labels_loaded > LABEL_REFRESH_EVERY:
            self.refresh_labels.clear()
            self._labels = self.store.labels()
            self._labels_loaded = now

    def _line(self, item: PendingReading) -> str:
        labels = self._labels.get(item.long_address) if item.long_address else None
        barcode = barcode_from_address(item.long_address) if item.long_address is not None else None
        identity = PointIdentity(
            gateway=str(item.gateway_id),
            node_id=item.node_id,
            barcode=barcode,
            name=labels.name if labels else None,
            string=labels.string if labels else None,
            site=self.settings.site,
        )
        return optimizer_line(identity, item.report, item.measured_at)


def _utc_now_for_parking() -> datetime:
    # Parking is bookkeeping about *when we gave up*, not data time: the wall clock is right.
    return datetime.now(UTC)


class Ingest:
    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        writer: LineWriter,
        *,
        archive: Archive | None = None,
        notifier: Notifier | None = None,
        latest: LatestReadings | None = None,
    ) -> None:
        self.settings = settings
        self.latest = latest  # live outputs' view of the newest readings (None: no live output)
        self.store = store
        self.outbox = Outbox(store.engine)
        self.observer = Observer(store.identity_map(), store.gateway_addresses())
        self.pipeline = DecodePipeline(self.observer)
        self.archive = archive
        self.notifier = notifier or Notifier()
        self.probe = LatencyProbe()
        self.sender = Sender(self.outbox, store, writer, settings, self.probe)
        self.writer = writer
        self.stop_requested = threading.Event()
        self.decode_watch = DecodeWatch(settings.no_report_warning)
        self.latest_at: datetime | None = None
        self._mapping_version = store.mapping_version()
        self.readings = 0
        self.dropped_unresolved = 0
        self.expired_unresolved = 0
        self._source: Source | None = None

    def stop(self) -> None:
        """Ask the run to end (signal handlers call this)."""
        self.stop_requested.set()
        if self._source is not None:
            self._source.stop()

    def run(self, source: Source, *, exit_at_end: bool = False) -> None:
        self._source = source
        source.check()
        settings = self.settings
        self.sender.start()
        self.notifier.ready()
        released = self.outbox.release(self.observer.identities)  # waiting since an earlier run
        depth = self.outbox.depth()
        if released:
            log.info("released %d held readings from an earlier run whose barcode is now known", released)
        log.info(
            "recording from %s to %s (bucket %s); outbox holds %d ready and %d held readings",
            source.describe(),
            settings.influx_url,
            settings.influx_bucket,
            depth["ready"],
            depth["held"],
        )
        pending: list[Output] = []
        arrivals: list[Reading] = []
        last_commit = last_health = last_hold_check = time.monotonic()
        health_minute: datetime | None = None
        finished = False
        try:
            for data, at in source.chunks():
                now = time.monotonic()
                self.latest_at = at
                if data:
                    if self.archive is not None:
                        self.archive.write(data, at)
                    _events, outputs = self.pipeline.feed(data, at)
                    if outputs:
                        pending.extend(outputs)
                        arrivals.extend(output for output in outputs if isinstance(output, Reading))
                        if self.latest is not None:
                            self.latest.observe(outputs, at)
                if pending and (
                    now - last_commit >= settings.flush_interval or len(arrivals) >= settings.batch_size
                ):
                    self._commit(pending, arrivals, at, now)
                    pending, arrivals = [], []
                    last_commit = now
                elif not pending:
                    last_commit = now
                # Housekeeping every so often live, and once per minute of source time in replays.
                minute = at.replace(second=0, microsecond=0)
                new_minute = health_minute is not None and minute != health_minute
                health_minute = minute
                if now - last_hold_check >= HOLD_CHECK_EVERY or new_minute:
                    self._expire_held(at)
                    last_hold_check = now
                if now - last_health >= HEALTH_EVERY or new_minute:
                    self._health(source)
                    last_health = now
                self.notifier.watchdog()
                if self.stop_requested.is_set():
                    break
            else:
                finished = True
        finally:
            if pending and self.latest_at is not None:
                self._commit(pending, arrivals, self.latest_at, time.monotonic())
            if self.latest_at is not None:
                self._expire_held(self.latest_at)
            if self.archive is not None:
                self.archive.close()
            self.notifier.stopping()
            self._health(source)
            self._shutdown(drain=exit_at_end and finished and not self.stop_requested.is_set())
            self._save_health(source)

    def _commit(self, outputs: list[Output], readings: list[Reading], at: datetime, arrived: float) -> None:
        """Outbox first (the readings are safe from here on), then identity, then tell the sender."""
        self.outbox.add(readings, at)
        self.probe.arrived(readings, arrived)
        self.readings += len(readings)
        self.store.record_outputs(outputs)
        learned = {(o.gateway_id, o.node_id) for o in outputs if isinstance(o, MappingLearned)}
        if learned:
            released = self.outbox.release(self.observer.identities, learned)
            if self.latest is not None:
                self.latest.identify(self.observer.identities, learned)
            if released:
                log.info("identity learned for %d node(s): released %d held readings", len(learned), released)
        if any(isinstance(o, GatewayLearned) for o in outputs) or learned:
            self.sender.refresh_labels.set()
        self.sender.wake.set()

    def _expire_held(self, at: datetime) -> None:
        """Release held readings whose identity is now known, then apply the hold's expiry.

        Mappings can also arrive from another process (`recorder nodes import` while we run):
        when the database's mappings changed, reload them into the observer first.
        """
        version = self.store.mapping_version()
        if version != self._mapping_version:
            self._mapping_version = version
            self.observer.identities = self.store.identity_map()
            self.sender.refresh_labels.set()
        released = self.outbox.release(self.observer.identities)
        if released:
            log.info("released %d held readings whose barcode is now known", released)
            self.sender.wake.set()
        written_unresolved: set[tuple[int, int]] = set()
        expired = self.outbox.expire(
            at, self.settings.identity_hold, self.settings.on_unresolved, written_unresolved
        )
        if self.latest is not None:
            self.latest.identify(self.observer.identities, hold_expired=written_unresolved)
        if expired:
            if self.settings.on_unresolved == "drop":
                self.dropped_unresolved += expired
            else:
                self.expired_unresolved += expired
            log.warning(
                "%d readings waited %s for a barcode: %s",
                expired,
                self.settings.identity_hold,
                "dropped" if self.settings.on_unresolved == "drop" else "written tagged with node ID only",
            )
            self.sender.wake.set()

    def _shutdown(self, *, drain: bool) -> None:
        sender = self.sender
        sender.wake.set()
        if drain:
            # A finite source ended: wait (as long as it takes) for the ready readings to go out.
            while not self.stop_requested.is_set():
                sender.idle.clear()
                sender.wake.set()
                if sender.idle.wait(1.0) and self.outbox.depth()["ready"] == 0:
                    break
        else:
            deadline = time.monotonic() + SHUTDOWN_GRACE
            while time.monotonic() < deadline and self.outbox.depth()["ready"]:
                sender.wake.set()
                time.sleep(0.1)
        sender.stop_requested.set()
        sender.wake.set()
        sender.join(timeout=SHUTDOWN_GRACE)
        self.writer.close()
        depth = self.outbox.depth()
        if depth["ready"] or depth["held"]:
            log.info(
                "stopping with %d ready and %d held readings in the outbox; they go out on the next run",
                depth["ready"],
                depth["held"],
            )

    def health_values(self, source: Source) -> dict[str, Any]:
        counters = self.pipeline.counters()
        depth = self.outbox.depth()
        latency = self.probe.percentiles()
        values: dict[str, Any] = {
            name: counters[name]
            for name in (
                "bytes",
                "frames",
                "checksum_errors",
                "noise_bytes",
                "truncated_frames",
                "runts",
                "giants",
                "unknown_frame_types",
                "unknown_packet_types",
                "power_reports",
                "invalid_power_reports",
                "duplicate_reports",
                "topology_reports",
                "node_tables",
            )
        }
        values.update(
            readings=self.readings,
            outbox_ready=depth["ready"],
            outbox_held=depth["held"],
            points_parked=depth["parked"],
            unresolved_nodes=self.outbox.held_nodes(),
            source_connected=source.status.state == "connected",
            source_reconnects=source.status.disconnects,
            watchdog_reconnects=source.status.watchdog_reconnects,
            decode_stalled=self.decode_watch.stalled,
            archive_errors=self.archive.errors if self.archive else 0,
            unresolved_dropped=self.dropped_unresolved,
            unresolved_written=self.expired_unresolved,
        )
        if latency is not None:
            values["latency_p50_ms"] = round(latency[0] * 1000)
            values["latency_p99_ms"] = round(latency[1] * 1000)
        return values

    def _health(self, source: Source) -> None:
        at = self.latest_at
        if at is None:
            return
        counters = self.pipeline.counters()
        warning = self.decode_watch.update(at, counters["frames"], counters["power_reports"])
        if warning:
            log.warning(warning)
        values = self.health_values(source)
        self._save_health(source, values)
        self.sender.submit_health(Health({**values, "source_name": source.describe()}, at))
        self.notifier.status(
            f"{self.sender.written} points written, outbox {values['outbox_ready']} ready / "
            f"{values['outbox_held']} held, source {source.status.state}"
        )

    def _save_health(self, source: Source, values: dict[str, Any] | None = None) -> None:
        """The snapshot `recorder status` shows. Stamped with the wall clock: whether the recorder
        is alive is a wall-clock question, whatever time the data carries."""
        self.store.put_state("health", self.status_snapshot(source, values), datetime.now(UTC))

    def status_snapshot(self, source: Source, values: dict[str, Any] | None = None) -> dict[str, Any]:
        """Health as `recorder status` and the live face show it (it only reads: any thread)."""
        values = values if values is not None else self.health_values(source)
        sender = self.sender
        tried = sender.last_write_at is not None or sender.write_errors > 0
        return {
            **values,
            "source": source.describe(),
            "source_state": source.status.state,
            "last_data_at": source.status.last_data_at.isoformat() if source.status.last_data_at else None,
            "last_error": source.status.last_error,
            "points_written": self.sender.written,
            "write_errors": self.sender.write_errors,
            "last_write_error": self.sender.last_error,
            "influx_reachable": (sender.last_error is None) if tried else None,
            "influx_url": self.settings.influx_url,
            "influx_bucket": self.settings.influx_bucket,
        }
