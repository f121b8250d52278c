"""Typed counters: each decoding layer keeps one dataclass of integers.

A layer increments its own counters (`self.counters.checksum_errors += 1`, or in a hot loop a
local written back once per batch). Reports, health points and JSON lines need one flat
name -> value mapping: `as_dict()` gives it, and `merged()` joins several layers' counters,
whose field names are unique across the recorder, so a merged name still says what it counts.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(slots=True)
class Counters:
    """Base of every layer's counters: integer fields, all starting at zero."""

    def as_dict(self) -> dict[str, int]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


def merged(*parts: Counters) -> dict[str, int]:
    """Several layers' counters as one flat mapping (names are unique across layers)."""
    result: dict[str, int] = {}
    for part in parts:
        values = part.as_dict()
        assert not values.keys() & result.keys(), f"counter names clash: {values.keys() & result.keys()}"
        result.update(values)
    return result
