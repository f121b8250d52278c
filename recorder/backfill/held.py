"""Readings waiting for their node's identity during a backfill, in bounded memory.

A backfill reads its input once, in order. A reading whose node is not known yet waits here until
a mapping for the node is learned later in the input (then it is released, resolved by its
measurement time like every reading), or until the input ends (then it is written without a
barcode, or dropped, as `--on-unresolved` says). `recorder run` keeps the same readings in the
state database's outbox as `held` rows; this store keeps the first `memory_limit` in memory
(the usual case: a few nodes for a few minutes) and moves them all into a scratch outbox (a
SQLite file of the same table, `recorder.storage.outbox`, deleted at the end) when more wait,
so a long input whose identity is never heard does not grow the process.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import cast

from sqlalchemy import Table, create_engine, event

from recorder.identity import IdentityMap, NodeKey
from recorder.reading import Reading, with_address
from recorder.storage.models import OutboxEntry
from recorder.storage.outbox import Outbox
from recorder.timestamps import from_millis

MEMORY_LIMIT = 20_000  # readings (about 8 MB; an hour of a 135-optimizer array)
_EPOCH = from_millis(0)


def _scratch_pragmas(connection: object, _record: object) -> None:
    # Thrown away at the end (and on a crash): no journal, no waiting for the disk.
    connection.execute("PRAGMA journal_mode = OFF")  # type: ignore[attr-defined]
    connection.execute("PRAGMA synchronous = OFF")  # type: ignore[attr-defined]


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
        self._scratch: Outbox | None = None
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
        if self._scratch is not None and self._spilled and self._scratch.release(identities, [key]):
            for batch in self._take_ready():
                released.extend(batch)
        return released

    def drain(self, batch_size: int = 5000) -> Iterator[list[Reading]]:
        """Every reading still waiting, in batches, unresolved (the input has ended)."""
        waiting = [reading for readings in self._memory.values() for reading in readings]
        self._memory.clear()
        self._in_memory = 0
        for start in range(0, len(waiting), batch_size):
            yield waiting[start : start + batch_size]
        if self._scratch is not None and self._spilled:
            for batch in self._scratch.held(batch_size):
                self._spilled -= len(batch)
                yield [item.reading for item in batch]

    def close(self) -> None:
        if self._scratch is not None:
            self._scratch.engine.dispose()
            self._scratch = None
        if self._scratch_directory is not None:
            shutil.rmtree(self._scratch_directory, ignore_errors=True)
            self._scratch_directory = None

    def _spill(self) -> None:
        if self._scratch is None:
            self._scratch_directory = tempfile.mkdtemp(prefix="recorder-held-", dir=self._directory)
            engine = create_engine(f"sqlite:///{Path(self._scratch_directory) / 'held.db'}")
            event.listen(engine, "connect", _scratch_pragmas)
            cast(Table, OutboxEntry.__table__).create(engine)
            self._scratch = Outbox(engine)
        readings = [reading for readings in self._memory.values() for reading in readings]
        added = self._scratch.add(readings, _EPOCH)
        self._spilled += added
        self.same_point += len(readings) - added
        self._memory.clear()
        self._in_memory = 0

    def _take_ready(self, batch_size: int = 5000) -> Iterator[list[Reading]]:
        assert self._scratch is not None
        while batch := self._scratch.next_batch(batch_size):
            self._scratch.acknowledge([item.id for item in batch])
            self._spilled -= len(batch)
            yield [item.reading for item in batch]
