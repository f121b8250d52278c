"""Readings waiting for their node's identity during a backfill, in bounded memory.

A backfill reads its input once, in order. A reading whose node is not known yet waits here until
a mapping for the node is learned later in the input (then it is released, resolved by its
measurement time like every reading), or until the input ends (then it is written without a
barcode, or dropped, as `--on-unresolved` says). `recorder run` keeps the same readings in the
state database's outbox as `held` rows; this store keeps the first `memory_limit` in memory
(the usual case: a few nodes for a few minutes) and moves them all into a scratch SQLite file
(deleted at the end) when more wait, so a long input whose identity is never heard does not
grow the process.

The scratch file is not the outbox: its only jobs are to hold readings, find a node's readings
when its mapping turns up, and give everything back at the end, and on an input without identity
traffic every reading goes through it. So it is one table keyed by (gateway, node, measured ms),
`WITHOUT ROWID` (one B-tree, no second index to keep), whose twelve columns are the compact
reading itself (`recorder.reading`): readings go in as the tuples they are and come back out as
the same tuples, with no conversion either way, through the standard library's `sqlite3`. Like
`run`'s outbox it keeps one reading per node and measurement millisecond (they are one point in
InfluxDB) and counts the others (`same_point`).

`drain` gives the readings back node by node, each node's in measurement order: the order in
which the daily energy integrates them, so the caller can feed energy batch by batch instead of
collecting the whole input's samples first.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from recorder.identity import IdentityMap, NodeKey
from recorder.reading import MEASURED_MS, Reading, with_address

MEMORY_LIMIT = 20_000  # readings (about 8 MB; an hour of a 135-optimizer array)

# The reading's fields as columns (`recorder.reading`); long_address is always NULL here.
_COLUMNS = (
    "gateway_id, node_id, measured_ms, received_ms, slot_counter, voltage_in_raw, voltage_out_raw, "
    "duty_cycle_raw, current_in_raw, temperature_raw, rssi, long_address"
)
_CREATE = (
    "CREATE TABLE held (gateway_id INTEGER, node_id INTEGER, measured_ms INTEGER, received_ms INTEGER, "
    "slot_counter INTEGER, voltage_in_raw INTEGER, voltage_out_raw INTEGER, duty_cycle_raw INTEGER, "
    "current_in_raw INTEGER, temperature_raw INTEGER, rssi INTEGER, long_address BLOB, "
    "PRIMARY KEY (gateway_id, node_id, measured_ms)) WITHOUT ROWID"
)
_INSERT = f"INSERT OR IGNORE INTO held ({_COLUMNS}) VALUES ({', '.join('?' * 12)})"
_SELECT_NODE = f"SELECT {_COLUMNS} FROM held WHERE gateway_id = ? AND node_id = ?"
_SELECT_ALL = f"SELECT {_COLUMNS} FROM held ORDER BY gateway_id, node_id, measured_ms"
_DELETE = "DELETE FROM held WHERE gateway_id = ? AND node_id = ? AND measured_ms = ?"


class HeldReadings:
    """See the module docstring. `directory` is where the scratch file goes (None: the system's
    temporary directory); call `close()` to delete it."""

    def __init__(self, directory: Path | None = None, memory_limit: int | None = None) -> None:
        self.memory_limit = MEMORY_LIMIT if memory_limit is None else memory_limit
        self._directory = directory
        self._memory: dict[NodeKey, list[Reading]] = {}
        self._in_memory = 0
        self._spilled = 0
        # Readings not kept because one of the same node and measurement millisecond was already
        # waiting in the scratch file (the outbox keeps one: they are the same point).
        self.same_point = 0
        self._scratch: sqlite3.Connection | None = None
        self._scratch_directory: str | None = None

    def __len__(self) -> int:
        return self._in_memory + self._spilled

    @property
    def spilled(self) -> int:
        """Readings waiting in the scratch file."""
        return self._spilled

    def add(self, reading: Reading) -> None:
        self._memory.setdefault((reading[0], reading[1]), []).append(reading)
        self._in_memory += 1
        if self._in_memory > self.memory_limit:
            self._spill()

    def add_all(self, readings: Iterable[Reading]) -> None:
        """`add` each of `readings` (one call for a batch: the backfill's hot path)."""
        memory = self._memory
        count = 0
        for reading in readings:
            key = (reading[0], reading[1])
            waiting = memory.get(key)
            if waiting is None:
                memory[key] = [reading]
            else:
                waiting.append(reading)
            count += 1
        self._in_memory += count
        if self._in_memory > self.memory_limit:
            self._spill()

    def release(self, key: NodeKey, identities: IdentityMap) -> list[Reading]:
        """The readings of `key` that resolve now (by their measurement times); the rest wait."""
        released: list[Reading] = []
        waiting = self._memory.pop(key, None)
        if waiting:
            remaining = []
            for reading in waiting:
                address = identities.resolve(key, reading[2])
                if address is None:
                    remaining.append(reading)
                else:
                    released.append(with_address(reading, address))
            self._in_memory -= len(waiting) - len(remaining)
            if remaining:
                self._memory[key] = remaining
        if self._scratch is not None and self._spilled:
            resolved = []
            for reading in self._scratch.execute(_SELECT_NODE, key):
                address = identities.resolve(key, reading[MEASURED_MS])
                if address is not None:
                    resolved.append(with_address(reading, address))
            if resolved:
                self._scratch.execute("BEGIN")
                self._scratch.executemany(_DELETE, [reading[:3] for reading in resolved])
                self._scratch.execute("COMMIT")
                self._spilled -= len(resolved)
                released += resolved
        return released

    def drain(self, batch_size: int = 5000) -> Iterator[list[Reading]]:
        """Every reading still waiting, in batches, unresolved (the input has ended): node by node,
        each node's in measurement order (module docstring)."""
        if self._scratch is not None:
            self._spill()  # the last few join the others, so that one query orders them all
            cursor = self._scratch.execute(_SELECT_ALL)
            while batch := cursor.fetchmany(batch_size):
                self._spilled -= len(batch)
                yield batch
            return
        waiting = [
            reading
            for _key, readings in sorted(self._memory.items())
            for reading in sorted(readings, key=_measured)
        ]
        self._memory.clear()
        self._in_memory = 0
        for start in range(0, len(waiting), batch_size):
            yield waiting[start : start + batch_size]

    def close(self) -> None:
        if self._scratch is not None:
            self._scratch.close()
            self._scratch = None
        if self._scratch_directory is not None:
            shutil.rmtree(self._scratch_directory, ignore_errors=True)
            self._scratch_directory = None

    def _spill(self) -> None:
        if self._scratch is None:
            self._scratch_directory = tempfile.mkdtemp(prefix="recorder-held-", dir=self._directory)
            self._scratch = sqlite3.connect(Path(self._scratch_directory) / "held.db", isolation_level=None)
            # Thrown away at the end (and on a crash): no journal, no waiting for the disk.
            self._scratch.execute("PRAGMA journal_mode = OFF")
            self._scratch.execute("PRAGMA synchronous = OFF")
            self._scratch.execute(_CREATE)
        readings = [reading for readings in self._memory.values() for reading in readings]
        scratch = self._scratch
        before = scratch.total_changes
        scratch.execute("BEGIN")
        scratch.executemany(_INSERT, readings)
        scratch.execute("COMMIT")
        added = scratch.total_changes - before
        self._spilled += added
        self.same_point += len(readings) - added
        self._memory.clear()
        self._in_memory = 0


def _measured(reading: Reading) -> int:
    return reading[MEASURED_MS]
