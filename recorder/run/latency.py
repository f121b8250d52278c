"""How long `recorder run` takes from bus to database: `LatencyProbe`.

From the arrival of the bytes that completed a power report to InfluxDB acknowledging its point,
for readings sent from memory and from the outbox alike; the sender records each acknowledged
batch, the loop puts the p50/p99 in its health point and `recorder status` shows them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from itertools import islice

from recorder.reading import Reading
from recorder.storage.outbox import PendingReading


class LatencyProbe:
    """From the arrival of the bytes completing a report to InfluxDB acknowledging its point.

    Durations go into 10 ms buckets up to two minutes (longer ones into the last bucket), so a
    day of readings costs a fixed few kilobytes and percentiles are exact to 10 ms. Readings
    sent from memory carry their arrival time; for readings that went through the outbox the
    probe remembers arrival times by key (at most `MAX_REMEMBERED`: after a long outage the
    oldest are not counted). Readings held for their barcode are not counted: their wait is
    the identity hold, not the recorder's latency.
    """

    BUCKET_SECONDS = 0.01
    BUCKETS = 12_000
    MAX_REMEMBERED = 20_000

    def __init__(self) -> None:
        # Keyed by measurement time in whole milliseconds: what the outbox stores and returns.
        self._arrivals: dict[tuple[int, ...], float] = {}
        self._histogram = [0] * self.BUCKETS
        self.count = 0
        self._lock = threading.Lock()

    def arrived(self, readings: list[Reading], at: float) -> None:
        """`readings`, which arrived at `at`, are now in the outbox."""
        with self._lock:
            for reading in readings:
                self._arrivals[reading[:3]] = at  # gateway, node, measured ms
            excess = len(self._arrivals) - self.MAX_REMEMBERED
            if excess > 0:  # forget the oldest
                for key in list(islice(self._arrivals, excess)):
                    del self._arrivals[key]

    @property
    def remembered(self) -> int:
        with self._lock:
            return len(self._arrivals)

    def acknowledged(self, pending: list[PendingReading], at: float) -> None:
        """InfluxDB acknowledged these outbox rows at `at`."""
        with self._lock:
            for item in pending:
                arrived = self._arrivals.pop(item.reading[:3], None)
                if arrived is not None:
                    self._add(at - arrived)

    def delivered(self, arrivals: Iterable[float], at: float) -> None:
        """InfluxDB acknowledged at `at` readings sent from memory, which arrived at `arrivals`."""
        with self._lock:
            for arrived in arrivals:
                self._add(at - arrived)

    def _add(self, seconds: float) -> None:
        bucket = min(int(seconds / self.BUCKET_SECONDS), self.BUCKETS - 1)
        self._histogram[bucket] += 1
        self.count += 1

    def percentile(self, fraction: float) -> float | None:
        """Upper edge of the bucket holding the given fraction of samples, in seconds."""
        with self._lock:
            if not self.count:
                return None
            wanted = fraction * self.count
            seen = 0
            for bucket, count in enumerate(self._histogram):
                seen += count
                if seen >= wanted:
                    return (bucket + 1) * self.BUCKET_SECONDS
        return None

    def percentiles(self) -> tuple[float, float] | None:
        p50, p99 = self.percentile(0.50), self.percentile(0.99)
        return (p50, p99) if p50 is not None and p99 is not None else None
