"""Daily energy in `recorder run`: feeding, checkpoints, restarts and `tigo_energy` points.

The arithmetic is in `recorder.energy`; this module runs it inside the run loop:

* **Feeding.** `feed` receives every reading at the moment it becomes ready to send, with the
  identity it is sent with: when it arrives with its barcode known, when its barcode is learned
  later (in memory or in the outbox), or without a barcode when the identity hold gives up on it
  (`InFlight.on_ready`, `Outbox.on_ready`). Readings the hold drops are never fed. So energy
  follows the identity hold exactly as `tigo_optimizer` points do, and it is computed in memory:
  feeding costs the disk nothing. `feed` only buffers; `tick` (after each chunk of the source)
  closes the reorder window by arrival time (`at` less the window), so the last readings before
  a quiet night are integrated; readings released together are integrated together, in order.
* **Checkpoints.** Every `CHECKPOINT_EVERY` (10 min) of source or wall time, whichever comes
  first, and only when something changed, one transaction writes the changed rows
  (`EnergyStore`), and the changed days' totals go to the sender as `tigo_energy` points. A clean
  stop integrates the reorder buffer and checkpoints (`close`), so a clean restart loses nothing.
* **Power cuts.** The readings integrated since the last checkpoint are lost to energy: at most
  `CHECKPOINT_EVERY` plus the reorder window (the checkpoint persists what was integrated, which
  is the window behind the newest reading); the readings themselves are protected by
  `recorder.run.loop`'s own bound. At start the accumulator loads the checkpoint and re-reads the
  outbox's ready rows (readings InfluxDB had not acknowledged): those at or before their series'
  last integrated reading are skipped, the rest are integrated, so what the outbox kept is not
  lost to energy either; held rows are fed when released.
* **Points.** The totals of every day still open, and of days whose point was not acknowledged
  before a stop (`unsent_days`), are sent again at start; rewriting the same point is harmless.
* **Energy today, live.** `today()` (any thread: the MQTT publisher) returns the running totals
  of the local day integration has reached (`EnergyAccumulator.running_today`: the same
  `day_totals` the points carry), as of the last time the read loop made them. Asking is what
  makes the read loop make them again, once, after its next advance of the reorder window (at
  most every `ADVANCE_EVERY` of source time) and at a clean stop: a run without a live output
  never computes them, and the reader only ever swaps one immutable object that the other
  thread reads, so neither waits for the other.

Disk: a checkpoint rewrites one row per optimizer for the current hour, the series positions and
one small JSON value: with 135 optimizers about 30 KB into the WAL (`benchmarks/energy_disk.py`),
six an hour in daylight: about 3 MB a day, and up to as much again when SQLite copies the WAL
back into the database.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Protocol

from sqlalchemy import Engine

from recorder.energy import (
    REORDER_WINDOW_MS,
    Changes,
    DayTotals,
    EnergyAccumulator,
    EnergyToday,
    zone_named,
)
from recorder.reading import Reading
from recorder.storage.energy import EnergyStore
from recorder.storage.outbox import Outbox
from recorder.timestamps import to_millis

log = logging.getLogger(__name__)

CHECKPOINT_EVERY = timedelta(minutes=10)
ADVANCE_EVERY = timedelta(seconds=10)


class EnergySink(Protocol):
    """Where the daily totals go (the sender, which writes them to InfluxDB)."""

    def submit_energy(self, days: Iterable[DayTotals]) -> None: ...

    def unsent_energy_days(self) -> set[date]: ...


class EnergyKeeper:
    """The energy accumulator of one `recorder run`, persisted in the state database."""

    def __init__(self, engine: Engine, timezone: str | None, max_gap: timedelta) -> None:
        zone, self.zone_name = zone_named(timezone)
        self.max_gap = max_gap
        self.accumulator = EnergyAccumulator(zone, max_gap)
        self.store = EnergyStore(engine)
        persisted = self.store.load(self.accumulator.days)
        previous = persisted.settings.get("timezone")
        if previous and previous != self.zone_name:
            log.warning(
                "daily energy: the time zone changed from %s to %s; days from now on are %s days",
                previous,
                self.zone_name,
                self.zone_name,
            )
        self.accumulator.restore(persisted.series, persisted.hours, persisted.newest_ms)
        self._unsent = {date.fromisoformat(day) for day in persisted.settings.get("unsent_days", [])}
        self._sink: EnergySink | None = None
        self._last_source: datetime | None = None
        self._advanced_to: datetime | None = None
        self._last_wall = time.monotonic()
        self._closed = False
        self._today: EnergyToday | None = None
        self._today_wanted = False  # set by a live output, cleared by the read loop
        self._today_asked = False  # a live output has asked at least once
        self.checkpoints = 0
        self._pending: Changes | None = None  # a checkpoint that could not be written (full disk)

    def feed(self, readings: Sequence[Reading]) -> None:
        """Buffer only: a chunk may add readings and then release older held ones, so nothing
        is integrated before the chunk is complete (`tick`)."""
        if not self._closed:
            self.accumulator.feed_readings(readings, integrate=False)

    def start(self, outbox: Outbox, sink: EnergySink) -> None:
        """Re-read the outbox's ready rows, and send the open days' points again."""
        self._sink = sink
        late = self.accumulator.late
        for rows in outbox.ready_rows():  # in commit order; memory stays flat
            self.accumulator.feed_readings(rows)
        self.accumulator.late = late  # repeats of integrated readings are expected here
        days = self.accumulator.open_days()
        open_keys = {(totals.key, totals.day) for totals in days}
        for (key, day), hours in self.store.day_hours(self._unsent).items():
            if (key, day) not in open_keys:
                days.append(self.accumulator.day(key, day, hours))
        if days:
            sink.submit_energy(days)

    def tick(self, at: datetime) -> None:
        """Everything received up to `at` has been fed: close the reorder window by arrival time
        (at most every few seconds of source time), and checkpoint when one is due."""
        if self._closed or self._sink is None:
            return
        if self._advanced_to is None or at - self._advanced_to >= ADVANCE_EVERY:
            self.accumulator.advance(to_millis(at) - REORDER_WINDOW_MS)
            self._advanced_to = at
            if self._today_wanted:
                self._today_wanted = False  # before making them: a request meanwhile is kept
                self._today = self.accumulator.running_today()
        now = time.monotonic()
        if self._last_source is None:
            self._last_source = at
        if (
            at - self._last_source >= CHECKPOINT_EVERY
            or now - self._last_wall >= CHECKPOINT_EVERY.total_seconds()
        ):
            self._last_source, self._last_wall = at, now  # first: a failed one waits its turn
            self.checkpoint()

    def close(self) -> None:
        """A clean stop: integrate the reorder buffer, checkpoint and hand over the points."""
        if self._sink is None:
            return
        self.accumulator.close()
        self._closed = True
        if self._today_asked:  # the live outputs' last pass shows the day's final totals
            self._today = self.accumulator.running_today()
        self.checkpoint()

    def today(self) -> EnergyToday | None:
        """The running totals of the current local day, as of the read loop's last advance (any
        thread; None until they are first made). Asking makes the read loop make them again."""
        self._today_asked = self._today_wanted = True
        return self._today

    def finish(self) -> None:
        """After the sender stopped: remember the days whose points it could not send."""
        if self._sink is not None:
            self.checkpoint()

    def checkpoint(self) -> None:
        assert self._sink is not None
        changes = _merged(self._pending, self.accumulator.take_changes())
        unsent = self._sink.unsent_energy_days() | {totals.day for totals in changes.days}
        if not (changes.series or changes.hours or unsent != self._unsent):
            return
        settings = {
            "timezone": self.zone_name,
            "max_gap_seconds": self.max_gap.total_seconds(),
            "newest_ms": changes.newest_ms,
            "unsent_days": sorted(day.isoformat() for day in unsent),
        }
        try:
            self.store.checkpoint(changes, settings)
        except Exception:
            self._pending = changes  # written with the next checkpoint (a full disk: see ingest)
            raise
        self._pending = None
        self._unsent = unsent
        self.checkpoints += 1
        if changes.days:
            self._sink.submit_energy(changes.days)


def _merged(older: Changes | None, newer: Changes) -> Changes:
    """`newer` on top of changes not written yet: the newest state of each row wins."""
    if older is None:
        return newer
    series = {state.key: state for state in [*older.series, *newer.series]}
    hours = {(key, day, hour): totals for key, day, hour, totals in [*older.hours, *newer.hours]}
    days = {(totals.key, totals.day): totals for totals in [*older.days, *newer.days]}
    newest = max((ms for ms in (older.newest_ms, newer.newest_ms) if ms is not None), default=None)
    return Changes(
        list(series.values()),
        [(key, day, hour, totals) for (key, day, hour), totals in hours.items()],
        list(days.values()),
        newest,
    )
