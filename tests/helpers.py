"""Shared test helpers: feed bytes in every chunking and insist the results agree."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from recorder.protocol.events import PowerReportFields, PowerReportReceived
from recorder.protocol.stack import Stack

T0 = datetime(2025, 6, 21, 12, 0, tzinfo=UTC)


def hexbytes(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


def chunkings(data: bytes, seed: int = 0, random_splits: int = 5) -> Iterator[tuple[str, list[bytes]]]:
    yield "whole", [data]
    yield "byte by byte", [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(seed)
    for attempt in range(random_splits):
        cuts = (
            sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 8))))
            if len(data) > 1
            else []
        )
        bounds = [0, *cuts, len(data)]
        yield (
            f"random split {attempt} at {cuts}",
            [data[a:b] for a, b in itertools.pairwise(bounds)],
        )


def decode(data: bytes, at: datetime = T0, *, verbose: bool = False) -> tuple[list[Any], dict[str, int]]:
    """Decode `data` in every chunking; assert events and counters agree; return them."""
    results = []
    for name, chunks in chunkings(data):
        stack = Stack(verbose=verbose)
        events: list[Any] = []
        for chunk in chunks:
            events.extend(stack.feed(chunk, at))
        results.append((name, events, stack.counters.as_dict()))
    _, reference_events, reference_counters = results[0]
    for name, events, counters in results[1:]:
        assert events == reference_events, f"events differ when fed {name}"
        assert counters == reference_counters, f"counters differ when fed {name}"
    return reference_events, reference_counters


def only(events: list[Any], kind: Any) -> list[Any]:
    """The events of one kind; power reports (plain tuples) with named fields."""
    if kind is PowerReportReceived:
        return [PowerReportFields._make(event) for event in events if isinstance(event, tuple)]
    return [event for event in events if isinstance(event, kind)]
