"""The whole decoder: bus bytes in, typed events out.

Theory of operation
-------------------
`Stack.feed(data, received_at)` pushes a chunk through link -> transport -> PV network -> PV
application and returns the events completed by that chunk, all stamped `received_at` (the
time the chunk arrived, as the caller's source measured it). Feeding the same bytes in any
chunking with the same timestamp yields the same events; a frame split across chunks is stamped
with the time of the chunk that completed it.

Each layer counts what it saw; `counters()` merges them into one flat dictionary with unique
names. Nothing raises on bad input.

With `verbose=True` every transport frame is also reported as a `FrameSeen` (for `peek
activity`); the default leaves them out because receive polls are most of the bus and nothing
downstream needs them.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime
from itertools import accumulate

from recorder.protocol.events import Event
from recorder.protocol.gateway.link import LinkDecoder
from recorder.protocol.gateway.transport import TransportDecoder
from recorder.protocol.pv.application import ApplicationDecoder


def delimit_records(
    link: LinkDecoder, records: list[tuple[bytes, datetime]]
) -> tuple[list[bytes], list[datetime]]:
    """The frame bodies a batch of timestamped chunks completes, each with the time of the chunk
    that completed it (as `Stack.feed` would stamp them, chunk by chunk)."""
    return delimit_chunks(link, [data for data, _ in records], [at for _, at in records])


def delimit_chunks(
    link: LinkDecoder, chunks: list[bytes], times: list[datetime]
) -> tuple[list[bytes], list[datetime]]:
    """`delimit_records` for chunks and their times in two lists."""
    if not chunks:
        return [], []
    bodies, positions = link.feed_located(b"".join(chunks))
    if not bodies:
        return bodies, []
    ends = list(accumulate(map(len, chunks)))
    return bodies, [times[bisect_right(ends, position)] for position in positions]


class Stack:
    def __init__(self, *, verbose: bool = False, application: ApplicationDecoder | None = None) -> None:
        self.link = LinkDecoder()
        self.application = application if application is not None else ApplicationDecoder()
        self.transport = TransportDecoder(self.application, verbose=verbose)

    def feed(self, data: bytes, received_at: datetime) -> list[Event]:
        events: list[Event] = []
        bodies = self.link.feed(data)
        if bodies:
            self.transport.feed(bodies, received_at, events)
        return events

    def feed_records(self, records: list[tuple[bytes, datetime]]) -> list[Event]:
        """Several timestamped chunks at once: the same events as feeding them one by one (each
        frame stamped with the time of the chunk that completed it), with far less overhead per
        chunk. Replays of capture files, whose records are tens of bytes, use this."""
        return self.feed_frames(*delimit_records(self.link, records))

    def feed_frames(self, bodies: list[bytes], times: list[datetime]) -> list[Event]:
        """Frame bodies another link decoder delimited (the backfill's read-ahead process),
        each with its receive time; this stack's own link counters stay at zero."""
        events: list[Event] = []
        if bodies:
            self.transport.feed(bodies, times[0], events, times)
        return events

    def counters(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        merged.update(self.link.counters())
        merged.update(self.transport.counters())
        merged.update(self.application.counters())
        return merged
