"""What every source of bus bytes is: the base the sources (`recorder.sources`) and the
simulator's source (`recorder.sim.source`) share.

It lives apart from `recorder.sources` so that the simulator can define its source without
importing the module that opens sources by URL (which imports the simulator's source, lazily,
for `sim:` URLs): the dependency runs one way, sources -> sim -> this module.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

Chunk = tuple[bytes, datetime]  # bus bytes, and when they were received


@dataclass
class SourceStatus:
    """Live health of a source, for logs, `tigo_recorder` points and `recorder status`."""

    state: str = "starting"  # starting | connected | reconnecting | finished
    connects: int = 0
    disconnects: int = 0
    watchdog_reconnects: int = 0
    last_data_at: datetime | None = None
    last_error: str | None = None
    bytes: int = 0


class Source:
    """A source of `(data, received_at)` chunks (see `recorder.sources`): `chunks()` yields them,
    `stop()` asks it to end from another thread, `status` says how it is doing."""

    url: str
    live: bool = False

    def __init__(self, url: str) -> None:
        self.url = url
        self.status = SourceStatus()
        self.stop_event = threading.Event()

    def describe(self) -> str:
        return self.url

    def check(self) -> None:
        """Raise SourceError now if the source obviously cannot work (missing file or device)."""

    def chunks(self) -> Iterator[Chunk]:
        raise NotImplementedError

    def stop(self) -> None:
        self.stop_event.set()
