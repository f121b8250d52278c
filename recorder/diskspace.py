"""Running out of disk space: recognising it, saying it, and knowing when to try again.

Theory of operation. On a Raspberry Pi the state database, the raw archive and often InfluxDB's
own files share one SD card, so a full disk is a matter of when. A write that fails for lack of
space (SQLite's "database or disk is full", `OSError` ENOSPC or EDQUOT) is not a bug and must
not end the run: the caller reports it here (`DiskSpace.failed`) and carries on, and tries again
later (`RETRY_EVERY`). What the recorder does meanwhile is the callers' business
(`recorder.run.loop`: readings stay in memory up to a bound, InfluxDB writes go on, the raw
archive gives way first); this module owns the one decision "is this error a full disk", the
one loud, rate-limited log line (naming the path and the free space), and the health fields
that `recorder status`, the `tigo_recorder` measurement and the live face show.

A path is "full" from its first failed write until a write to it succeeds again
(`DiskSpace.recovered`), which is said in one line too.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RETRY_EVERY = 10.0  # seconds between attempts to write to a full disk
LOG_EVERY = 600.0  # seconds between "still full" lines while the disk stays full
_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def is_disk_full(error: BaseException | None) -> bool:
    """Whether `error` (or what it wraps: SQLAlchemy keeps the driver's error in `.orig`) says
    that the disk or the user's quota is full."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _SPACE_ERRNOS:
            return True
        if isinstance(error, sqlite3.Error) and (
            getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
            or "database or disk is full" in str(error)
        ):
            return True
        wrapped = getattr(error, "orig", None)
        error = wrapped if isinstance(wrapped, BaseException) else (error.__cause__ or error.__context__)
    return False


def free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged writer can still use on the filesystem holding `path`."""
    for candidate in (path, *path.parents):
        try:
            stat = os.statvfs(candidate)
        except OSError:
            continue
        return stat.f_bavail * stat.f_frsize
    return None


def describe_bytes(count: int | None) -> str:
    if count is None:
        return "unknown"
    if count < 10 * 1024:
        return f"{count} bytes"
    if count < 10 * 1024 * 1024:
        return f"{count / 1024:.0f} kB"
    return f"{count / 1024 / 1024:.0f} MB"


@dataclass
class _Full:
    since: float  # monotonic
    since_wall: datetime
    failures: int
    what: str


class DiskSpace:
    """Which paths could not be written for lack of space (thread-safe: reader and sender)."""

    def __init__(self) -> None:
        self._full: dict[Path, _Full] = {}
        self._lock = threading.Lock()
        self._logged_at: float | None = None
        self.events = 0  # writes that failed for lack of space, ever
        self.last_path: Path | None = None
        self.last_full_at: datetime | None = None
        self.primary: Path | None = None  # shown first when full (the state database)

    def _shown(self) -> Path | None:
        """The path health speaks of: the primary one if full, else the first to fill."""
        if self.primary is not None and self.primary in self._full:
            return self.primary
        if self._full:
            return min(self._full, key=lambda path: self._full[path].since)
        return self.last_path

    @property
    def full(self) -> bool:
        with self._lock:
            return bool(self._full)

    def is_full(self, path: Path) -> bool:
        with self._lock:
            return path in self._full

    def failed(self, path: Path, what: str, consequence: str) -> None:
        """A write of `what` to `path` failed for lack of space; `consequence` says what the
        recorder does about it (for the log line)."""
        now = time.monotonic()
        with self._lock:
            self.events += 1
            self.last_path = path
            self.last_full_at = datetime.now(UTC)
            state = self._full.get(path)
            if state is None:
                state = self._full[path] = _Full(now, self.last_full_at, 0, what)
            state.failures += 1
            first = state.failures == 1
            due = first or self._logged_at is None or now - self._logged_at >= LOG_EVERY
            if due:
                self._logged_at = now
        if not due:
            return
        free = describe_bytes(free_bytes(path))
        if first:
            log.error("DISK FULL: cannot write %s to %s (%s free there); %s", what, path, free, consequence)
        else:
            log.error(
                "DISK STILL FULL: %d writes to %s failed since %s (%s free there); %s",
                state.failures,
                path,
                state.since_wall.isoformat(timespec="seconds"),
                free,
                consequence,
            )

    def recovered(self, path: Path, what: str) -> None:
        """A write to `path` succeeded: if it was full, say that space is back."""
        with self._lock:
            state = self._full.pop(path, None)
        if state is not None:
            log.warning(
                "disk space is back: %s written to %s again after %.0f s (%d failed writes; %s free)",
                what,
                path,
                time.monotonic() - state.since,
                state.failures,
                describe_bytes(free_bytes(path)),
            )

    def health(self) -> dict[str, int | bool]:
        """Numeric fields for the health snapshot (`tigo_recorder`, `recorder status`, /metrics)."""
        with self._lock:
            full = bool(self._full)
            path = self._shown()
        values: dict[str, int | bool] = {"disk_full": full, "disk_full_events": self.events}
        free = free_bytes(path) if path is not None else None
        if free is not None:
            values["disk_free_bytes"] = free
        return values

    def describe(self) -> dict[str, Any]:
        """Where and since when, for `recorder status` and /api/status (text, not fields)."""
        with self._lock:
            path = self._shown()
            since = self._full[path].since_wall if path in self._full else None
            what = self._full[path].what if path in self._full else None
        return {
            "disk_path": str(path) if path is not None else None,
            "disk_full_since": since.isoformat(timespec="seconds") if since else None,
            "disk_full_what": what,
            "disk_last_full_at": (
                self.last_full_at.isoformat(timespec="seconds") if self.last_full_at else None
            ),
        }
