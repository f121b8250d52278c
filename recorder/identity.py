"""Who is behind a node ID, and since when: in-memory mapping history.

A (gateway ID, node ID) pair is the controller's handle for an optimizer; the optimizer's
identity is its long address (and barcode). The pair can be reassigned when hardware is
replaced, so we keep, per pair, the sequence of intervals `[valid_from, next valid_from)` with
the long address valid in each, and resolve a reading by its *measurement* time. A report
measured before a replacement but delivered after the change was learned is thus still credited
to the old unit.

Before the first interval we know of, the first mapping is assumed: nothing earlier contradicts
it, and a mapping learned a few seconds after the first reports should label those reports too.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

NodeKey = tuple[int, int]  # (gateway ID, node ID)


@dataclass(frozen=True, slots=True)
class Interval:
    valid_from: datetime
    long_address: bytes
    source: str


class IdentityMap:
    def __init__(self) -> None:
        self._intervals: dict[NodeKey, list[Interval]] = {}
        self._starts: dict[NodeKey, list[datetime]] = {}

    def __len__(self) -> int:
        return len(self._intervals)

    def keys(self) -> Iterator[NodeKey]:
        return iter(self._intervals)

    def intervals(self, key: NodeKey) -> list[Interval]:
        return list(self._intervals.get(key, ()))

    def current(self, key: NodeKey) -> bytes | None:
        intervals = self._intervals.get(key)
        return intervals[-1].long_address if intervals else None

    def resolve(self, key: NodeKey, at: datetime) -> bytes | None:
        """The long address valid for `key` at `at` (see module docstring)."""
        intervals = self._intervals.get(key)
        if not intervals:
            return None
        if len(intervals) == 1:
            return intervals[0].long_address
        index = bisect_right(self._starts[key], at) - 1
        return intervals[max(index, 0)].long_address

    def learn(
        self, key: NodeKey, long_address: bytes, source: str, at: datetime
    ) -> tuple[bool, bytes | None]:
        """Record that `key` was seen mapped to `long_address` at `at`.

        Returns (changed, previous address): changed is False when the same address is already
        valid at `at`; previous is None for a key seen for the first time.
        """
        intervals = self._intervals.setdefault(key, [])
        starts = self._starts.setdefault(key, [])
        if not intervals:
            intervals.append(Interval(at, long_address, source))
            starts.append(at)
            return True, None
        index = max(bisect_right(starts, at) - 1, 0)
        if intervals[index].long_address == long_address:
            return False, long_address
        if at < starts[0]:
            # Evidence from before anything we knew (e.g. replaying older files): a new first interval.
            intervals.insert(0, Interval(at, long_address, source))
            starts.insert(0, at)
            return True, intervals[1].long_address
        previous = intervals[index].long_address
        intervals.insert(index + 1, Interval(at, long_address, source))
        starts.insert(index + 1, at)
        return True, previous

    def seed(self, key: NodeKey, interval: Interval) -> None:
        """Load a known interval (from the state database), keeping intervals in time order."""
        intervals = self._intervals.setdefault(key, [])
        starts = self._starts.setdefault(key, [])
        index = bisect_right(starts, interval.valid_from)
        intervals.insert(index, interval)
        starts.insert(index, interval.valid_from)
