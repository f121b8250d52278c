"""The placement step: a power report event in, a compact reading out (or a counted drop).

Theory of operation
-------------------
Consumes: `PowerReportReceived` events from the protocol stack, in stream order. Emits:
`recorder.reading.Reading` tuples. Every command that turns power reports into readings
(`observe`, `run`, `backfill`) does it here, through `Observer`, so each rule below is written
once. For each report, in this order:

1. **validate**: the PV application layer has already dropped reports that are too short or
   whose own slot counter is impossible (`invalid_power_reports`). Here: a report whose receive
   response carried an impossible gateway slot counter cannot be placed; it is dropped and
   counted (`unplaced_reports`). See `recorder.protocol.slots` for why this rule, rather than
   placing it against an earlier response's counter.
2. **slot clock**: the measurement time, `slots.measured_ms`: the receive time (whole
   milliseconds) minus 5 ms per slot back from the response's counter to the report's.
3. **de-duplicate**: the same report can arrive twice (a gateway retransmission the transport
   did not catch, a restart overlap). A report is a duplicate (`duplicate_reports`) when a
   reading of the same (gateway, node, slot counter) was placed within 3 s of it. Two copies of
   one report land well under a second apart (receive-time jitter, plus the gateway
   oscillator's ~1 % over the delivery delay); a different report with the same counter is a
   whole counter cycle (~240 s) away. (A tight window also keeps fast replays through live
   sources, where the cycle shrinks to a few seconds of wall time, from being mistaken for
   duplicates.) Memory is bounded by time: a report is measured at most
   `slots.PLACEMENT_HORIZON_MS` before it is received, so readings measured longer ago than that
   plus the window, before the newest receive time, can never match again and are forgotten
   (checked once per `PRUNE_EVERY_MS` of stream time).
4. **identity**: the long address valid at the measurement time (`IdentityMap.resolve`), or
   None while the node is unknown; the caller decides what waits for it (the outbox's hold in
   `run`, the held readings of a backfill) and `observe` prints it as is.
5. **compact reading**: gateway, node, measured and received ms, slot counter, raw values,
   address (`recorder.reading`).

The step is pure: no IO, no clock; the same reports in the same order give the same readings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from recorder.counters import Counters
from recorder.identity import IdentityMap
from recorder.protocol.events import Event
from recorder.protocol.slots import PLACEMENT_HORIZON_MS, measured_ms
from recorder.reading import Reading
from recorder.timestamps import to_millis

DUPLICATE_WINDOW_MS = 3000
PRUNE_EVERY_MS = 600_000  # ten minutes of stream time: a few thousand readings remembered
# Readings measured this long before the newest receive time can no longer have a duplicate.
FORGET_AFTER_MS = PLACEMENT_HORIZON_MS + DUPLICATE_WINDOW_MS


@dataclass(slots=True)
class PlacementCounters(Counters):
    """What became of the power reports given to the placement step."""

    readings: int = 0
    duplicate_reports: int = 0
    unplaced_reports: int = 0  # their receive response's gateway slot counter was impossible


class Placement:
    """Power report events to compact readings (see the module docstring). One per stream: it
    remembers recent readings to recognise duplicates."""

    def __init__(self, identities: IdentityMap) -> None:
        self.identities = identities
        self.counters = PlacementCounters()
        # (gateway << 32 | node << 16 | slot counter) -> measurement ms of its latest reading
        self._recent: dict[int, int] = {}
        self._newest_received_ms = 0
        self._prune_at_ms: int | None = None
        # Every frame of one record shares its receive time object: convert it once.
        self._last_at: datetime | None = None
        self._last_ms = 0

    def place(self, events: list[Event], out: list[Reading], other: Callable[[Event], None]) -> None:
        """Append the readings of the power reports among `events` to `out`, in order, counting
        what is dropped; every other event goes to `other` (the observer) where it stands, so
        identity it carries applies to the reports after it."""
        resolve = self.identities.resolve
        single = self.identities.single
        recent = self._recent
        append = out.append
        last_at, received_ms = self._last_at, self._last_ms
        readings = duplicates = unplaced = 0
        for event in events:
            if type(event) is not tuple:
                other(event)
                continue
            (gateway_id, node_id, received_at, gateway_slot_counter, slot_counter, voltage_in,
             voltage_out, duty_cycle, current_in, temperature, rssi) = event  # fmt: skip
            if received_at is not last_at:
                last_at, received_ms = received_at, to_millis(received_at)
            measured = measured_ms(received_ms, gateway_slot_counter, slot_counter)
            if measured is None:
                unplaced += 1
                continue
            node = (gateway_id << 16) | node_id
            key = (node << 16) | slot_counter
            seen = recent.get(key)
            if seen is not None and -DUPLICATE_WINDOW_MS < seen - measured < DUPLICATE_WINDOW_MS:
                duplicates += 1
                continue
            recent[key] = measured
            readings += 1
            address = single.get(node)
            if address is None:  # unknown, or replaced at some time: by the measurement time
                address = resolve((gateway_id, node_id), measured)
            append(
                (gateway_id, node_id, measured, received_ms, slot_counter, voltage_in, voltage_out,
                 duty_cycle, current_in, temperature, rssi, address)
            )  # fmt: skip
        self._last_at, self._last_ms = last_at, received_ms
        counters = self.counters
        counters.readings += readings
        counters.duplicate_reports += duplicates
        counters.unplaced_reports += unplaced
        if received_ms > self._newest_received_ms:
            self._newest_received_ms = received_ms
            if self._prune_at_ms is None:
                self._prune_at_ms = received_ms + PRUNE_EVERY_MS
            elif received_ms >= self._prune_at_ms:
                self._prune(received_ms)

    def _prune(self, newest_ms: int) -> None:
        oldest = newest_ms - FORGET_AFTER_MS
        self._recent = {key: at for key, at in self._recent.items() if at >= oldest}
        self._prune_at_ms = newest_ms + PRUNE_EVERY_MS

    @property
    def remembered(self) -> int:
        """Readings kept for recognising duplicates (bounded by time, see `_prune`)."""
        return len(self._recent)
