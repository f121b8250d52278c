"""Readings in flight: received, but neither acknowledged by InfluxDB nor committed to the outbox.

Theory of operation. Committing every reading to SQLite before sending it, then deleting it
once InfluxDB acknowledged it, wrote about 2 GB a day to the SD card of a recorder with 135
optimizers, for readings that InfluxDB acknowledges within a second. So a reading first waits
here, in memory, and the sender writes it to InfluxDB from here: a reading InfluxDB
acknowledges in time never touches the disk. What InfluxDB has not acknowledged in time goes
to the outbox:

* the reader calls `commit(cutoff)` every `commit_interval / 2` seconds with
  `cutoff = now - commit_interval / 2`: every reading that arrived before the cutoff and is
  still here is committed. A reading therefore waits in memory at most `commit_interval`
  seconds (it arrived just after one commit point's cutoff and is committed at the next one but
  one), and has at least `commit_interval / 2` seconds to be acknowledged first. That bound is
  the most a crash or a power cut can lose;
* readings whose node has no barcode yet (the identity hold) are never sent from here; they are
  committed as `held` by the same rule, unless their identity is learned first (`resolve`);
* `commit(None)` commits everything, for a clean stop and when more than `limit` readings
  wait (a replay faster than InfluxDB, or InfluxDB down during a replay): memory stays bounded.

`on_ready` (optional) is called on the reader's thread, outside the lock, with every reading
that becomes ready here: added with its barcode known, or resolved while it waits (held readings
already committed are announced by `Outbox.release`/`expire` instead). The daily energy
accumulator is fed that way, in memory.

The two threads meet here under one lock. The sender `take`s ready readings (they are then in
flight to InfluxDB), and afterwards either `finish`es them (acknowledged, or parked as bad
data) or `give_back`s them (InfluxDB unavailable). `commit` may catch a reading while it is in
flight: it is committed anyway, since the write may still fail, and marked; `finish` then
returns it so the sender deletes its outbox row. `commit` holds the lock across the SQLite
insert, so a `finish` can never come between the decision to commit and the row.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import count

from recorder.identity import IdentityMap
from recorder.reading import LONG_ADDRESS, MEASURED_MS, Reading, with_address
from recorder.storage.outbox import Outbox

# About 0.5 kB each: a replay's worth of readings never costs more than a few MB.
DEFAULT_LIMIT = 5000
# While the disk is full, readings that cannot be committed wait here, at most this many (about
# 50 MB; four hours of 135 optimizers reporting every 20 s); beyond it the oldest are dropped.
DISK_FULL_LIMIT = 100_000


@dataclass(slots=True)
class InFlightReading:
    """A reading waiting in memory, with when it arrived (monotonic seconds)."""

    reading: Reading
    arrived: float
    key: int
    sending: bool = False
    committed: bool = False


class InFlight:
    """The memory side of the outbox (see the module docstring)."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        limit: int = DEFAULT_LIMIT,
        on_ready: Callable[[Sequence[Reading]], None] | None = None,
    ) -> None:
        self.outbox = outbox
        self.limit = limit
        self.on_ready = on_ready
        self._entries: dict[int, InFlightReading] = {}  # by sequence number: arrival order
        self._sequence = count()
        self._lock = threading.Lock()

    def counts(self) -> tuple[int, int]:
        """(ready, held) readings that a crash now would lose: neither acknowledged nor committed."""
        ready = held = 0
        with self._lock:
            for entry in self._entries.values():
                if not entry.committed:
                    if entry.reading[LONG_ADDRESS] is None:
                        held += 1
                    else:
                        ready += 1
        return ready, held

    @property
    def full(self) -> bool:
        return len(self._entries) > self.limit

    def __len__(self) -> int:
        return len(self._entries)

    def shed(self, bound: int) -> int:
        """Forget the oldest readings beyond `bound` (none on its way to InfluxDB): the disk is
        full and memory must stay bounded. Returns how many were dropped."""
        dropped = 0
        with self._lock:
            excess = len(self._entries) - bound
            if excess <= 0:
                return 0
            for key, entry in list(self._entries.items()):  # arrival order: oldest first
                if dropped >= excess:
                    break
                if not entry.sending:
                    del self._entries[key]
                    dropped += 1
        return dropped

    def add(self, readings: Iterable[Reading], arrived: float) -> None:
        ready: list[Reading] = []
        with self._lock:
            for reading in readings:
                key = next(self._sequence)
                self._entries[key] = InFlightReading(reading, arrived, key)
                if reading[LONG_ADDRESS] is not None:
                    ready.append(reading)
        if ready and self.on_ready is not None:
            self.on_ready(ready)

    def resolve(self, identities: IdentityMap, keys: set[tuple[int, int]] | None = None) -> int:
        """Give held readings whose node is now known their address. Returns how many."""
        resolved: list[Reading] = []
        with self._lock:
            for entry in self._entries.values():
                reading = entry.reading
                if reading[LONG_ADDRESS] is not None or entry.committed:
                    continue
                key = (reading[0], reading[1])
                if keys is not None and key not in keys:
                    continue
                address = identities.resolve(key, reading[MEASURED_MS])
                if address is not None:
                    entry.reading = with_address(reading, address)
                    resolved.append(entry.reading)
        if resolved and self.on_ready is not None:
            self.on_ready(resolved)
        return len(resolved)

    def take(self, limit: int) -> list[InFlightReading]:
        """Up to `limit` ready readings, oldest first, now in flight to InfluxDB."""
        taken: list[InFlightReading] = []
        with self._lock:
            for entry in self._entries.values():
                if len(taken) >= limit:
                    break
                if entry.sending or entry.committed or entry.reading[LONG_ADDRESS] is None:
                    continue
                entry.sending = True
                taken.append(entry)
        return taken

    def finish(self, entries: Iterable[InFlightReading]) -> list[Reading]:
        """Taken readings InfluxDB acknowledged (or that were parked): forget them.

        Returns those committed meanwhile: their outbox rows are to be deleted.
        """
        committed = []
        with self._lock:
            for entry in entries:
                self._forget(entry)
                if entry.committed:
                    committed.append(entry.reading)
        return committed

    def give_back(self, entries: Iterable[InFlightReading]) -> None:
        """Taken readings InfluxDB did not take: they wait here again (or in the outbox)."""
        with self._lock:
            for entry in entries:
                entry.sending = False
                if entry.committed:  # the outbox has it now and the sender will find it there
                    self._forget(entry)

    def commit(
        self, cutoff: float | None, enqueued_at: datetime, *, held_only: bool = False
    ) -> list[InFlightReading]:
        """Commit to the outbox every reading that arrived before `cutoff` (None: all of them),
        or only the held ones. Returns the committed entries, oldest first."""
        with self._lock:
            due: list[InFlightReading] = []
            for entry in self._entries.values():
                if cutoff is not None and entry.arrived > cutoff:
                    break  # arrival order: the rest are younger
                if entry.committed or (held_only and entry.reading[LONG_ADDRESS] is not None):
                    continue
                due.append(entry)
            if not due:
                return []
            self.outbox.add([entry.reading for entry in due], enqueued_at)
            for entry in due:
                entry.committed = True
                if not entry.sending:
                    self._forget(entry)
        return due

    def _forget(self, entry: InFlightReading) -> None:
        self._entries.pop(entry.key, None)
