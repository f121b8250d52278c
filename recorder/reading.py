"""The compact reading: one placed power report, as the placement step makes it.

A reading is a plain tuple of integers (and the optimizer's long address, or None while its node
is unknown), fields in this order:

    gateway_id, node_id,
    measured_ms     when the optimizer measured (slot clock), epoch milliseconds
    received_ms     when the bytes completing the report arrived, epoch milliseconds
    slot_counter    the report's own slot counter
    voltage_in_raw, voltage_out_raw, duty_cycle_raw, current_in_raw, temperature_raw, rssi
                    the raw wire integers (`recorder.protocol.units` gives their units)
    long_address    the optimizer behind the node ID at `measured_ms`, or None if not known yet

Everything downstream takes readings in this one form: the outbox stores them as they are,
`recorder.sinks.points` formats points from them, `recorder.sinks.jsonl` prints them, and the
backfill holds the unresolved ones. A tuple because a backfill makes millions (a tuple costs a
tenth of a dataclass); `ReadingFields` names the fields where speed does not matter.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, NamedTuple

Reading = tuple[int, int, int, int, int, int, int, int, int, int, int, bytes | None]

# Field positions, for the few places that pick one field out of a reading.
GATEWAY_ID: Final = 0
NODE_ID: Final = 1
MEASURED_MS: Final = 2
RECEIVED_MS: Final = 3
SLOT_COUNTER: Final = 4
LONG_ADDRESS: Final = 11


class ReadingFields(NamedTuple):
    """A reading with named fields (`ReadingFields._make(reading)`), for code off the hot path."""

    gateway_id: int
    node_id: int
    measured_ms: int
    received_ms: int
    slot_counter: int
    voltage_in_raw: int
    voltage_out_raw: int
    duty_cycle_raw: int
    current_in_raw: int
    temperature_raw: int
    rssi: int
    long_address: bytes | None


def with_address(reading: Reading, long_address: bytes | None) -> Reading:
    """The same reading resolved to `long_address` (a held reading whose node became known)."""
    return (*reading[:LONG_ADDRESS], long_address)


Activity = dict[tuple[int, int], list[int]]  # (gateway, node) -> [first measured ms, last, count]


def count_activity(activity: Activity, readings: Iterable[Reading]) -> None:
    """Add `readings` to each node's activity (what `recorder nodes list` shows as LAST REPORT and
    REPORTS): the one rule `run` (`StateStore.record_outputs`) and `backfill` count by."""
    for reading in readings:
        key = (reading[0], reading[1])
        measured_ms = reading[2]
        seen = activity.get(key)
        if seen is None:
            activity[key] = [measured_ms, measured_ms, 1]
            continue
        seen[2] += 1
        if measured_ms < seen[0]:
            seen[0] = measured_ms
        elif measured_ms > seen[1]:
            seen[1] = measured_ms
