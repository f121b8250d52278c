"""Who is behind a node ID, and since when: in-memory mapping history.

A (gateway ID, node ID) pair is the controller's handle for an optimizer; the optimizer's
identity is its long address (and barcode). The pair can be reassigned when hardware is
replaced, so we keep, per pair, the sequence of intervals `[valid_from, next valid_from)` with
the long address valid in each, and resolve a reading by its *measurement* time. A report
measured before a replacement but delivered after the change was learned is thus still credited
to the old unit.

Before the first interval we know of, the first mapping is assumed: nothing earlier contradicts
it, and a mapping learned a few seconds after the first reports should label those reports too.

Times are epoch milliseconds, as readings and the state database carry them, so a mapping
resolves the same whether it was just learned or loaded from the database after a restart.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass

NodeKey = tuple[int, int]  # (gateway ID, node ID)


@dataclass(frozen=True, slots=True)
class Interval:
    valid_from_ms: int
    long_address: bytes
    source: str


class IdentityMap:
    """Mapping history per (gateway, node ID), resolved by measurement time (module docstring)."""

    def __init__(self) -> None:
        self._intervals: dict[NodeKey, list[Interval]] = {}
        # The same intervals as two parallel lists, for resolving without attribute look-ups.
        self._starts: dict[NodeKey, list[int]] = {}
        self._addresses: dict[NodeKey, list[bytes]] = {}
        # The address of every node with a single interval, which is its address at any time,
        # keyed by `gateway << 16 | node`: the placement step resolves most readings from here
        # without a call (`resolve` for the rest). Read it, never write it.
        self.single: dict[int, bytes] = {}

    def __len__(self) -> int:
        return len(self._intervals)

    def keys(self) -> Iterator[NodeKey]:
        return iter(self._intervals)

    def intervals(self, key: NodeKey) -> list[Interval]:
        return list(self._intervals.get(key, ()))

    def current(self, key: NodeKey) -> bytes | None:
        addresses = self._addresses.get(key)
        return addresses[-1] if addresses else None

    def resolve(self, key: NodeKey, at_ms: int) -> bytes | None:
        """The long address valid for `key` at `at_ms` (see module docstring)."""
        addresses = self._addresses.get(key)
        if addresses is None:
            return None
        if len(addresses) == 1:
            return addresses[0]
        return addresses[max(bisect_right(self._starts[key], at_ms) - 1, 0)]

    def learn(self, key: NodeKey, long_address: bytes, source: str, at_ms: int) -> tuple[bool, bytes | None]:
        """Record that `key` was seen mapped to `long_address` at `at_ms`.

        Returns (changed, previous address): changed is False when the same address is already
        valid at `at_ms`; previous is None for a key seen for the first time.
        """
        starts = self._starts.get(key)
        if starts is None:
            self._insert(key, 0, Interval(at_ms, long_address, source))
            return True, None
        addresses = self._addresses[key]
        index = max(bisect_right(starts, at_ms) - 1, 0)
        if addresses[index] == long_address:
            return False, long_address
        if at_ms < starts[0]:
            # Evidence from before anything we knew (e.g. replaying older files): a new first interval.
            self._insert(key, 0, Interval(at_ms, long_address, source))
            return True, addresses[1]
        previous = addresses[index]
        self._insert(key, index + 1, Interval(at_ms, long_address, source))
        return True, previous

    def seed(self, key: NodeKey, interval: Interval) -> None:
        """Load a known interval (from the state database), keeping intervals in time order."""
        self._insert(key, bisect_right(self._starts.get(key, []), interval.valid_from_ms), interval)

    def _insert(self, key: NodeKey, index: int, interval: Interval) -> None:
        self._intervals.setdefault(key, []).insert(index, interval)
        self._starts.setdefault(key, []).insert(index, interval.valid_from_ms)
        addresses = self._addresses.setdefault(key, [])
        addresses.insert(index, interval.long_address)
        if len(addresses) == 1:
            self.single[(key[0] << 16) | key[1]] = addresses[0]
        else:
            self.single.pop((key[0] << 16) | key[1], None)
