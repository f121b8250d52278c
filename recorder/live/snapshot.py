"""Everything one render of the live face needs, gathered once: optimizers, labels, health.

`LiveData.snapshot()` is called by the HTTP threads for every request. It takes:

* the latest readings (`LatestReadings.snapshot`, a copy under a short lock);
* the user's labels (`StateStore.labels()`), re-read at most every `LABELS_EVERY` seconds so a
  `recorder nodes label` made while the recorder runs shows within half a minute;
* the recorder's health (`Ingest.status_snapshot`: counters, outbox depth, source state...),
  re-read at most every `HEALTH_EVERY` seconds, so a page open on several phones and a
  Prometheus scraping every second cost the database a few small reads per second at most;
* with `energy` (`EnergyKeeper.today`), the running energy of the day, only for callers that
  ask (`snapshot(energy=True)`: the MQTT publisher), since asking costs the read loop a sum.

Both callables run on the HTTP thread and only read; a failure there is logged and the last
good values are kept, so the face shows what it can rather than an error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from recorder.live.latest import LatestReadings, LatestSnapshot

if TYPE_CHECKING:
    from recorder.energy import EnergyToday
    from recorder.storage.state import Labels

log = logging.getLogger(__name__)

HEALTH_EVERY = 1.0  # seconds
LABELS_EVERY = 30.0


@dataclass(frozen=True, slots=True)
class LiveSnapshot:
    latest: LatestSnapshot
    health: Mapping[str, Any]
    labels: Mapping[bytes, Labels] = field(default_factory=dict)  # by long address
    energy: EnergyToday | None = None  # when asked for, and known


class LiveData:
    """The live face's single source: the latest-reading view, labels and health, cached briefly."""

    def __init__(
        self,
        latest: LatestReadings,
        health: Callable[[], Mapping[str, Any]],
        labels: Callable[[], Mapping[bytes, Labels]],
        *,
        energy: Callable[[], EnergyToday | None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.latest = latest
        self._energy_source = energy
        self._health_source = health
        self._labels_source = labels
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._health: Mapping[str, Any] = {}
        self._health_at: float | None = None
        self._labels: Mapping[bytes, Labels] = {}
        self._labels_at: float | None = None

    def snapshot(self, *, energy: bool = False) -> LiveSnapshot:
        with self._lock:  # one request refreshes; the others wait a moment and share the result
            now = self._monotonic()
            if self._labels_at is None or now - self._labels_at >= LABELS_EVERY:
                self._labels = self._read("labels", self._labels_source, self._labels)
                self._labels_at = now
            if self._health_at is None or now - self._health_at >= HEALTH_EVERY:
                self._health = self._read("health", self._health_source, self._health)
                self._health_at = now
            labels, health = self._labels, self._health
        today = self._energy_source() if energy and self._energy_source is not None else None
        return LiveSnapshot(self.latest.snapshot(labels, today), health, labels, today)

    @staticmethod
    def _read(what: str, source: Callable[[], Any], previous: Any) -> Any:
        try:
            return source()
        except Exception as error:  # a locked or busy database must not break the page
            log.warning("live face: could not read the %s (%s); showing the last known", what, error)
            return previous
