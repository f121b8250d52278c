"""Bytes to domain outputs: the protocol stack and the observer, glued once for every command."""

from __future__ import annotations

from datetime import datetime

from recorder.observer import Observer, Output
from recorder.protocol.events import Event
from recorder.protocol.stack import Stack


class DecodePipeline:
    def __init__(self, observer: Observer | None = None, *, verbose: bool = False) -> None:
        self.stack = Stack(verbose=verbose)
        self.observer = observer if observer is not None else Observer()

    def feed(self, data: bytes, received_at: datetime) -> tuple[list[Event], list[Output]]:
        if not data:
            return [], []
        events = self.stack.feed(data, received_at)
        outputs = self.observer.handle(events) if events else []
        return events, outputs

    def counters(self) -> dict[str, int]:
        merged = self.stack.counters()
        merged.update(self.observer.counters())
        return merged
