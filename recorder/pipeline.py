"""Bytes to domain outputs: the protocol stack and the observer, glued once for every command.

`observe`, `run` and `backfill` all decode through a `DecodePipeline`, so a power report becomes
a reading by one path whichever command reads it: the stack's events go to the observer in
stream order (identity learned from a packet applies to every later report), and the observer's
placement step makes the readings (`recorder.placement`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from recorder.counters import merged
from recorder.observer import IdentityOutput, Observed, Observer, ObserverCounters
from recorder.placement import PlacementCounters
from recorder.protocol.events import Event
from recorder.protocol.stack import Stack, StackCounters
from recorder.reading import Reading


class Decoded(NamedTuple):
    events: list[Event]
    readings: list[Reading]
    learned: list[IdentityOutput]


@dataclass(slots=True)
class PipelineCounters:
    """Every layer's counters, kept by the layers themselves."""

    stack: StackCounters
    placement: PlacementCounters
    observer: ObserverCounters

    def as_dict(self) -> dict[str, int]:
        return {**self.stack.as_dict(), **merged(self.placement, self.observer)}


class DecodePipeline:
    """A `Stack` and an `Observer` for one byte stream: bytes (or frame bodies) in, the stack's
    events and the observer's outputs (readings, identity) out."""

    def __init__(self, observer: Observer | None = None, *, verbose: bool = False) -> None:
        self.stack = Stack(verbose=verbose)
        self.observer = observer if observer is not None else Observer()
        self.counters = PipelineCounters(
            self.stack.counters, self.observer.placement.counters, self.observer.counters
        )

    def feed(self, data: bytes, received_at: datetime) -> Decoded:
        """A chunk of bus bytes: the stack's events, and the observer's readings and identity."""
        events = self.stack.feed(data, received_at) if data else []
        if not events:
            return Decoded(events, [], [])
        readings, learned = self.observer.feed(events)
        return Decoded(events, readings, learned)

    def feed_frames(self, bodies: list[bytes], times: list[datetime]) -> Observed:
        """Frame bodies delimited elsewhere (the backfill's read-ahead), each with its receive
        time: the observer's readings and identity."""
        events = self.stack.feed_frames(bodies, times)
        return self.observer.feed(events) if events else Observed([], [])
