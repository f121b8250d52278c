"""`recorder run`'s health: what the loop hands the sender, and the stalled-decoder warning.

`Health` is one health point's values and source time, built by the loop (`Ingest`) and written
by the sender as a `tigo_recorder` point. `DecodeWatch` warns when frames keep arriving in
daylight but no power report decodes, the sign of a firmware change the decoder does not know.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

DEFAULT_DAYLIGHT = (10.0, 14.0)  # local hours we assume are daylight before we have learned them


class DecodeWatch:
    """Warns when frames keep arriving in daylight but no power report decodes (a new format?).

    Daylight is learned from when reports were seen on recent days (local time); before that we
    assume 10:00-14:00, when the sun is up nearly everywhere people put panels.
    """

    def __init__(self, threshold: timedelta) -> None:
        self.threshold = threshold
        self.stalled = False
        self._last_report_at: datetime | None = None
        self._frames_at_last_report = 0
        self._reports = 0
        self._last_warning: datetime | None = None
        self._days: dict[str, list[float]] = {}

    def window(self) -> tuple[float, float]:
        recent = sorted(self._days)[-7:]
        if len(recent) < 2:
            return DEFAULT_DAYLIGHT
        first = statistics.median(self._days[day][0] for day in recent)
        last = statistics.median(self._days[day][1] for day in recent)
        return (first + 1.0, last - 1.0) if last - first > 3 else DEFAULT_DAYLIGHT

    def update(self, at: datetime, frames: int, power_reports: int) -> str | None:
        local = at.astimezone()
        hour = local.hour + local.minute / 60
        if power_reports > self._reports or self._last_report_at is None:
            if power_reports > self._reports:
                day = self._days.setdefault(local.date().isoformat(), [hour, hour])
                day[0], day[1] = min(day[0], hour), max(day[1], hour)
            self._reports = power_reports
            self._last_report_at = at
            self._frames_at_last_report = frames
            self.stalled = False
            return None
        start, end = self.window()
        silent = at - self._last_report_at
        busy = frames - self._frames_at_last_report > 100
        self.stalled = busy and silent >= self.threshold and start <= hour <= end
        if not self.stalled:
            return None
        if self._last_warning is not None and at - self._last_warning < self.threshold:
            return None
        self._last_warning = at
        minutes = int(silent.total_seconds() // 60)
        return (
            f"frames keep arriving ({frames - self._frames_at_last_report} since the last power report) but "
            f"no power report has decoded for {minutes} minutes of daylight: the controller's firmware may "
            "have changed the format. The raw bytes are in the archive; upgrade the recorder and backfill."
        )


@dataclass
class Health:
    """One health point: the values the loop gathered and the source time they are for."""

    values: dict[str, Any] = field(default_factory=dict)
    at: datetime | None = None
