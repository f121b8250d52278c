"""`recorder run`: source -> decoder -> InfluxDB, without losing a reading, light on the disk.

Two threads:

* the reader (`Ingest.run` here, on the main thread) reads the source, appends the raw
  bytes to the archive, decodes, and puts the new readings in memory (`InFlight`);
* the sender (`recorder.run.sender.Sender`) takes ready readings from memory (then from the
  outbox), writes them to InfluxDB in batches, and forgets them (deletes their outbox rows) once
  InfluxDB acknowledged the write. While InfluxDB is down it backs off (1 s doubling to 60 s).

Durability (the guarantee the README states): every `commit_interval / 2` seconds the reader
commits to the outbox (SQLite, synced to the disk) the readings that have waited in memory for
more than `commit_interval / 2` seconds without being acknowledged; every `commit_interval` it
flushes and syncs the raw archive; identity changes, which are rare, are committed when they
happen. No reading stays in memory longer than `commit_interval` seconds: that is the most a
crash or a power cut can lose. With InfluxDB up, readings are acknowledged within a second or
two and never touch the disk; with InfluxDB down the outbox grows and later drains, as before.
The snapshot that `recorder status` shows is saved every two minutes, node activity every ten.
Each commit costs the disk a few pages (WAL frame, -shm index) whatever it holds, so fewer
commits is what keeps an SD card alive: tens of MB a day instead of about 2 GB.

The sender never blocks the reader: a serial port's buffer holds about a second of bus
traffic, so a slow database must not stall reading.

Identity hold: readings of a node without a known barcode wait (in memory, then in the outbox
as `held`, by the same rule); they are released, tagged with the barcode valid at their
measurement time, as soon as the mapping is learned, or after `identity_hold` are written
without a barcode (or dropped), as configured. Times that decide this are source times, so a
replay behaves like the live run it recorded.

A full disk (see `recorder.diskspace`): a commit that fails for lack of space leaves its readings
in memory, where the sender keeps writing them to InfluxDB; the recorder says so once (and every
ten minutes while it lasts), makes the raw archive give way (it pauses and deletes its oldest
file, one per attempt, when it shares the filesystem), and tries again every `RETRY_EVERY`
seconds instead of at each commit point. At most `DISK_FULL_LIMIT` readings wait in memory; beyond
that the oldest are dropped, counted (`readings_dropped_disk_full`) and said. Identity changes and
the status snapshot that could not be saved are saved at the next attempt. When a write succeeds
again everything held is committed and the run carries on as before; it never stops for it.
The sender, when it cannot delete acknowledged rows from a full outbox, stops reading the outbox
until the next attempt (those rows are sent again later: the same points, harmless) and keeps
writing readings from memory.

Shutdown (SIGTERM/SIGINT or a finite source's end): the reader commits held readings, the
sender gets a few seconds to write, and whatever is still unsent is committed to
the outbox for next time: a clean stop loses nothing.

Daily energy (`recorder.energy_keeper`) is fed in memory as readings become ready to send (the
announcements of `InFlight` and `Outbox`), ticks after each chunk of the source, checkpoints to
the state database every 10 minutes and at a clean stop, and its `tigo_energy` points go out
through the sender.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path
from typing import Any

from recorder.archive import Archive
from recorder.config import Settings
from recorder.diskspace import LOG_EVERY, RETRY_EVERY, DiskSpace, is_disk_full
from recorder.energy_keeper import EnergyKeeper
from recorder.live.latest import LatestReadings
from recorder.observer import GatewayLearned, IdentityOutput, MappingLearned, Observer
from recorder.pipeline import DecodePipeline
from recorder.reading import LONG_ADDRESS, Reading
from recorder.run.health import DecodeWatch, Health
from recorder.run.latency import LatencyProbe
from recorder.run.sender import Sender, database_path
from recorder.sinks.influx import LineWriter
from recorder.sources import Source
from recorder.storage.inflight import DISK_FULL_LIMIT, InFlight
from recorder.storage.outbox import Outbox
from recorder.storage.state import ActivityTally, StateStore
from recorder.systemd import Notifier

log = logging.getLogger(__name__)

HEALTH_EVERY = 10.0  # seconds (wall clock) between health points sent to InfluxDB
# Seconds between saves of the snapshot `recorder status` shows (which calls a snapshot older than
# 2.5 saves "not running?"), and of node activity (`nodes list`: last report, count). Each save is
# one commit, and each commit costs the SD card about 20 kB, whatever it holds.
STATE_SAVE_EVERY = 120.0
ACTIVITY_SAVE_EVERY = 600.0
HOLD_CHECK_EVERY = 60.0
SHUTDOWN_GRACE = 5.0


def _same_filesystem(first: Path, second: Path) -> bool:
    try:
        return first.stat().st_dev == second.stat().st_dev
    except OSError:
        return False


class Ingest:
    """`recorder run`'s reader loop: source -> pipeline -> memory and outbox, identity and health
    (module docstring); starts and stops the `Sender`."""

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
        self.energy = EnergyKeeper(store.engine, settings.timezone, settings.energy_max_gap)
        self.outbox = Outbox(store.engine, on_ready=self.energy.feed)
        self.inflight = InFlight(self.outbox, on_ready=self.energy.feed)
        self.observer = Observer(store.identity_map(), store.gateway_addresses())
        self.pipeline = DecodePipeline(self.observer)
        self.archive = archive
        self.disk = archive.disk if archive is not None else DiskSpace()
        self.database = database_path(store)
        self.disk.primary = self.database
        self.notifier = notifier or Notifier()
        self.probe = LatencyProbe()
        self.sender = Sender(self.inflight, self.outbox, store, writer, settings, self.probe, self.disk)
        self.writer = writer
        self.stop_requested = threading.Event()
        self.decode_watch = DecodeWatch(settings.no_report_warning)
        self.latest_at: datetime | None = None
        self._mapping_version = store.mapping_version()
        self._activity = ActivityTally()  # reports since the last save
        self.readings = 0
        self.dropped_unresolved = 0
        self.expired_unresolved = 0
        self._source: Source | None = None
        # A full disk (see the module docstring): when to try again (0: not full), what waits.
        self.memory_limit = DISK_FULL_LIMIT
        self.dropped_disk_full = 0
        self._disk_retry_at = 0.0
        self._dropped_logged_at: float | None = None
        self._identity_unsaved: list[IdentityOutput] = []
        self._archive_yields = archive is not None and _same_filesystem(
            archive.directory, self.database.parent
        )

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
        self.energy.start(self.outbox, self.sender)
        released = self._write_or_wait(  # held since an earlier run, and their barcode is known now
            "the outbox", lambda: self.outbox.release(self.observer.identities)
        )
        depth = self.outbox.depth()
        if released:
            log.info("released %d held readings from an earlier run whose barcode is now known", released)
            self._outbox_changed()  # the sender may have looked already (woken by the energy points)
        log.info(
            "recording from %s to %s (bucket %s); outbox holds %d ready and %d held readings",
            source.describe(),
            settings.influx_url,
            settings.influx_bucket,
            depth["ready"],
            depth["held"],
        )
        self._save_state(source)  # `recorder status` can tell at once that we are running
        commit_every = settings.commit_interval / 2
        last_commit = last_archive_flush = last_health = last_hold_check = time.monotonic()
        last_save = last_activity_save = last_commit
        health_minute: datetime | None = None
        finished = False
        try:
            for data, at in source.chunks():
                now = time.monotonic()
                self.latest_at = at
                if data:
                    if self.archive is not None:
                        self.archive.write(data, at)
                    _events, readings, learned = self.pipeline.feed(data, at)
                    if readings and self.latest is not None:  # first: identity learned below updates it
                        self.latest.observe(readings, at)
                    if readings or learned:
                        self._accept(readings, learned, now)
                if self._disk_retry_at:  # the disk is full: keep memory bounded, try again now and then
                    self._shed()
                    if now >= self._disk_retry_at:
                        self._retry_disk(at, now - commit_every, source)
                        last_commit = now
                elif self.inflight.full:  # faster than InfluxDB takes it: memory stays bounded
                    self._commit(at, cutoff=None)
                    last_commit = now
                elif now - last_commit >= commit_every:
                    self._commit(at, cutoff=now - commit_every)
                    last_commit = now
                if self.archive is not None and now - last_archive_flush >= settings.commit_interval:
                    # Raw bytes reach the disk within the same bound. Not at every commit: each
                    # flush rewrites the file's last, incomplete page once more.
                    self.archive.flush()
                    last_archive_flush = now
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
                if now - last_save >= STATE_SAVE_EVERY:
                    with_activity = now - last_activity_save >= ACTIVITY_SAVE_EVERY
                    self._save_state(source, activity=with_activity)
                    last_save = now
                    if with_activity:
                        last_activity_save = now
                # Every ready reading received up to `at` has been fed (released ones included).
                self._energy(self.energy.tick, at)
                self.notifier.watchdog()
                if self.stop_requested.is_set():
                    break
            else:
                finished = True
        finally:
            at = self.latest_at or datetime.now(UTC)
            # Held readings first, so that the hold's expiry sees every one of them.
            self._disk_retry_at = 0.0  # a last attempt, full disk or not
            self._commit(at, cutoff=None, held_only=True)
            if self.latest_at is not None:
                self._expire_held(self.latest_at)
            if self.archive is not None:
                self.archive.close()
            self._energy(lambda _at: self.energy.close(), at)
            self.notifier.stopping()
            self._health(source)
            self._shutdown(drain=exit_at_end and finished and not self.stop_requested.is_set())
            self._energy(lambda _at: self.energy.finish(), at)
            self._disk_retry_at = 0.0
            if not self._commit(at, cutoff=None):  # what InfluxDB has not taken waits in the outbox
                lost = sum(self.inflight.counts())
                log.error(
                    "DISK FULL at stop: %d readings InfluxDB has not acknowledged could not be saved "
                    "to %s and are lost",
                    lost,
                    self.database,
                )
            self._report_leftovers()
            self._save_state(source)

    def _accept(self, readings: list[Reading], identity: list[IdentityOutput], now: float) -> None:
        """New observer outputs: readings into memory, identity changes into the state store.

        Identity is committed at once: changes are rare (a new or replaced optimizer), and the
        observer's memory is reloaded from the database when its mappings change (not for the
        mappings it learned itself, which it knows already).
        """
        self.inflight.add(readings, now)
        self._activity.add(readings)
        self.readings += len(readings)
        identity = [output for output in identity if isinstance(output, (MappingLearned, GatewayLearned))]
        if not identity:
            return
        version = self.store.mapping_version()
        self._identity_unsaved += identity
        if self._save_identity() and version == self._mapping_version:
            # Only our own mappings were added: the observer knows them already, no reload.
            self._mapping_version = self.store.mapping_version()
        learned = {(o.gateway_id, o.node_id) for o in identity if isinstance(o, MappingLearned)}
        if learned:
            self.inflight.resolve(self.observer.identities, learned)
            released = self._write_or_wait(
                "the outbox", lambda: self.outbox.release(self.observer.identities, learned)
            )
            if self.latest is not None:
                self.latest.identify(self.observer.identities, learned)
            if released:
                log.info("identity learned for %d node(s): released %d held readings", len(learned), released)
                self._outbox_changed()
        self.sender.refresh_labels.set()

    def _commit(self, at: datetime, *, cutoff: float | None, held_only: bool = False) -> bool:
        """Commit readings that arrived before `cutoff` (None: all; or only the held ones).
        Returns False when the disk is full (they stay in memory)."""
        if self._disk_retry_at:
            return False  # the disk is full: the next attempt is `_retry_disk`'s
        try:
            committed = self.inflight.commit(cutoff, at, held_only=held_only)
        except Exception as error:
            if not is_disk_full(error):
                raise
            self._out_of_space("readings")
            return False
        if committed:
            ready = [entry for entry in committed if entry.reading[LONG_ADDRESS] is not None]
            for arrived, group in groupby(ready, key=lambda entry: entry.arrived):
                self.probe.arrived([entry.reading for entry in group], arrived)
            self._outbox_changed()
        return True

    # --- a full disk ----------------------------------------------------------------------------

    def _write_or_wait(self, what: str, write: Callable[[], int]) -> int:
        """Run a write to the state database; on a full disk, note it and return 0 (the write is
        one that is tried again later anyway)."""
        if self._disk_retry_at:
            return 0
        try:
            return write()
        except Exception as error:
            if not is_disk_full(error):
                raise
            self._out_of_space(what)
            return 0

    def _out_of_space(self, what: str) -> None:
        first = not self._disk_retry_at
        self._disk_retry_at = time.monotonic() + RETRY_EVERY
        if self.archive is not None and self._archive_yields:
            self.archive.give_way()  # first: raw bytes make room for readings
        self.disk.failed(
            self.database,
            what,
            f"readings wait in memory (at most {self.memory_limit}, then the oldest are dropped) and "
            f"are committed when space returns, tried every {RETRY_EVERY:g} s; InfluxDB writes go on",
        )
        if first and self._source is not None:
            self._save_state(self._source)  # small: it may fit where readings did not

    def _energy(self, step: Callable[[datetime], None], at: datetime) -> None:
        """An energy step that may checkpoint: on a full disk the checkpoint waits (the keeper
        keeps its changes and writes them with the next one), the run goes on."""
        try:
            step(at)
        except Exception as error:
            if not is_disk_full(error):
                raise
            if not self._disk_retry_at:
                self._out_of_space("energy totals")

    def _shed(self) -> None:
        dropped = self.inflight.shed(self.memory_limit)
        if not dropped:
            return
        self.dropped_disk_full += dropped
        now = time.monotonic()
        if self._dropped_logged_at is None or now - self._dropped_logged_at >= LOG_EVERY:
            self._dropped_logged_at = now
            log.error(
                "DISK FULL: dropped the oldest readings InfluxDB has not acknowledged (%d so far): "
                "memory holds at most %d while %s cannot be written",
                self.dropped_disk_full,
                self.memory_limit,
                self.database,
            )

    def _retry_disk(self, at: datetime, cutoff: float, source: Source) -> None:
        """The disk was full: try what waits (identity, readings, the status snapshot) again."""
        self._disk_retry_at = 0.0
        if self.archive is not None and self._archive_yields and self.archive.paused:
            self.archive.give_way()  # before readings are risked; one file per attempt
        if self._save_identity() and self._commit(at, cutoff=cutoff) and self._save_state(source):
            self.disk.recovered(self.database, "readings")

    def _save_identity(self) -> bool:
        """Commit identity changes learned (and not saved for a full disk). Returns success."""
        if not self._identity_unsaved or self._disk_retry_at:
            return not self._identity_unsaved

        def save() -> int:
            self.store.record_outputs(self._identity_unsaved)
            self._identity_unsaved = []
            return 1

        return bool(self._write_or_wait("identity changes", save))

    def _outbox_changed(self) -> None:
        self.sender.outbox_ready.set()
        self.sender.wake.set()

    def _expire_held(self, at: datetime) -> None:
        """Release held readings whose identity is now known, then apply the hold's expiry.

        Mappings can also arrive from another process (`recorder nodes import` while we run):
        when the database's mappings changed, reload them into the observer first.
        """
        version = self.store.mapping_version()
        if version != self._mapping_version and not self._identity_unsaved:
            self._mapping_version = version
            self.observer.identities = self.store.identity_map()
            self.inflight.resolve(self.observer.identities)
            self.sender.refresh_labels.set()
        released = self._write_or_wait("the outbox", lambda: self.outbox.release(self.observer.identities))
        if released:
            log.info("released %d held readings whose barcode is now known", released)
            self._outbox_changed()
        written_unresolved: set[tuple[int, int]] = set()
        expired = self._write_or_wait(
            "the outbox",
            lambda: self.outbox.expire(
                at, self.settings.identity_hold, self.settings.on_unresolved, written_unresolved
            ),
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
            self._outbox_changed()

    def _unsent(self) -> int:
        return self.outbox.depth()["ready"] + self.inflight.counts()[0]

    def _shutdown(self, *, drain: bool) -> None:
        sender = self.sender
        sender.wake.set()
        if drain:
            # A finite source ended: wait (as long as it takes) for the ready readings to go out.
            while not self.stop_requested.is_set():
                sender.idle.clear()
                sender.wake.set()
                if sender.idle.wait(1.0) and self._unsent() == 0:
                    break
        else:
            deadline = time.monotonic() + SHUTDOWN_GRACE
            while time.monotonic() < deadline and self._unsent():
                sender.wake.set()
                time.sleep(0.1)
        sender.stop_requested.set()
        sender.wake.set()
        sender.join(timeout=SHUTDOWN_GRACE)
        self.writer.close()

    def _report_leftovers(self) -> None:
        depth = self.outbox.depth()
        if depth["ready"] or depth["held"]:
            log.info(
                "stopping with %d ready and %d held readings in the outbox; they go out on the next run",
                depth["ready"],
                depth["held"],
            )

    def health_values(self, source: Source) -> dict[str, Any]:
        counters = self.pipeline.counters.as_dict()
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
                "unplaced_reports",
                "retransmitted_packets",
                "truncated_packets",
                "topology_reports",
                "node_tables",
            )
        }
        values.update(
            readings=self.readings,
            readings_in_memory=sum(self.inflight.counts()),
            outbox_ready=depth["ready"],
            outbox_held=depth["held"],
            points_parked=depth["parked"],
            unresolved_nodes=self.outbox.held_nodes(),
            source_connected=source.status.state == "connected",
            source_reconnects=source.status.disconnects,
            watchdog_reconnects=source.status.watchdog_reconnects,
            decode_stalled=self.decode_watch.stalled,
            archive_errors=self.archive.errors if self.archive else 0,
            archive_paused=self.archive.paused if self.archive else False,
            archive_skipped_bytes=self.archive.skipped_bytes if self.archive else 0,
            archive_removed_for_space=self.archive.removed_for_space if self.archive else 0,
            unresolved_dropped=self.dropped_unresolved,
            unresolved_written=self.expired_unresolved,
            readings_dropped_disk_full=self.dropped_disk_full,
            **self.disk.health(),
        )
        if latency is not None:
            values["latency_p50_ms"] = round(latency[0] * 1000)
            values["latency_p99_ms"] = round(latency[1] * 1000)
        return values

    def _health(self, source: Source) -> None:
        at = self.latest_at
        if at is None:
            return
        counters = self.pipeline.counters.stack
        warning = self.decode_watch.update(at, counters.link.frames, counters.application.power_reports)
        if warning:
            log.warning(warning)
        values = self.health_values(source)
        self.sender.submit_health(Health({**values, "source_name": source.describe()}, at))
        self.notifier.status(
            f"{self.sender.written} points written, outbox {values['outbox_ready']} ready / "
            f"{values['outbox_held']} held, source {source.status.state}"
        )

    def _save_state(self, source: Source, *, activity: bool = True) -> bool:
        """The snapshot `recorder status` shows, with node activity since the last save if asked.

        One transaction: each commit costs the SD card a few pages whatever it holds. The
        snapshot is stamped with the wall clock: whether the recorder is alive is a wall-clock
        question, whatever time the data carries.
        """
        tally = None
        if activity and self._activity:
            tally, self._activity = self._activity, ActivityTally()
        snapshot = self.status_snapshot(source)
        try:
            self.store.put_state("health", snapshot, datetime.now(UTC), activity=tally)
        except Exception as error:
            if not is_disk_full(error):
                raise
            if tally is not None:
                self._activity = tally  # nothing was added meanwhile (same thread): saved next time
            if not self._disk_retry_at:
                self._out_of_space("the status snapshot")
            return False
        return True

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
            **self.disk.describe(),
        }
