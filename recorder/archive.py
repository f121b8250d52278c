"""The raw archive: every byte `recorder run` receives, in hourly capture files.

Layout: `DIR/YYYY/MM/DD/YYYY-MM-DDTHH.cap.gz` (UTC hour of the receive time), in the capture
format of `recorder.capture`, so `recorder backfill DIR` can replay it after a decoder upgrade.
A file reopened within the same hour (after a restart) gets another gzip member appended. The
compressor is flushed every few seconds, so a crash loses at most those seconds of raw bytes.
Files older than the retention (by the hour in their name) are deleted as hours roll over.

Archive problems (full disk, permissions) are logged and counted, never fatal: the readings
themselves are already safe in the outbox.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from recorder.capture import CaptureWriter

log = logging.getLogger(__name__)
_NAME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2})\.cap\.gz$")


def archive_file(directory: Path, at: datetime) -> Path:
    hour = at.astimezone(UTC)
    return directory / f"{hour:%Y}" / f"{hour:%m}" / f"{hour:%d}" / f"{hour:%Y-%m-%dT%H}.cap.gz"


def archive_files(directory: Path) -> list[tuple[datetime, Path]]:
    """Archive files under `directory` with the UTC hour they hold, oldest first."""
    found = []
    for path in directory.rglob("*.cap.gz"):
        match = _NAME.match(path.name)
        if match:
            year, month, day, hour = (int(part) for part in match.groups())
            found.append((datetime(year, month, day, hour, tzinfo=UTC), path))
    return sorted(found)


class Archive:
    def __init__(self, directory: Path, retention_days: int, flush_seconds: float = 5.0) -> None:
        self.directory = directory
        self.retention = timedelta(days=retention_days) if retention_days > 0 else None
        self.flush_seconds = flush_seconds
        self.errors = 0
        self.bytes = 0
        self._path: Path | None = None
        self._stream: BinaryIO | None = None
        self._writer: CaptureWriter | None = None
        self._last_flush = time.monotonic()
        self._failing_since: float | None = None

    def write(self, data: bytes, at: datetime) -> None:
        if not data:
            return
        try:
            path = archive_file(self.directory, at)
            if path != self._path:
                self._rotate(path, at)
            assert self._writer is not None
            self._writer.write(data, at)
            self.bytes += len(data)
            if time.monotonic() - self._last_flush >= self.flush_seconds:
                self.flush()
            self._failing_since = None
        except OSError as error:
            self.errors += 1
            self._close_quietly()
            now = time.monotonic()
            if self._failing_since is None or now - self._failing_since > 3600:
                self._failing_since = now
                log.error(
                    "raw archive: cannot write under %s (%s); readings are unaffected", self.directory, error
                )

    def _rotate(self, path: Path, at: datetime) -> None:
        self.close()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._stream = path.open("ab")
        self._writer = CaptureWriter(self._stream, mtime=int(at.timestamp()))
        self._path = path
        self._prune(at)

    def _prune(self, now: datetime) -> None:
        if self.retention is None:
            return
        cutoff = now - self.retention
        for hour, path in archive_files(self.directory):
            if hour + timedelta(hours=1) > cutoff:
                break
            try:
                path.unlink()
                log.info("raw archive: removed %s (older than %s days)", path, self.retention.days)
                for parent in (path.parent, path.parent.parent, path.parent.parent.parent):
                    if parent != self.directory and not any(parent.iterdir()):
                        parent.rmdir()
            except OSError as error:
                log.warning("raw archive: cannot remove %s (%s)", path, error)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        if self._writer is not None and self._stream is not None:
            try:
                self._writer.close()
                self._stream.close()
            except OSError as error:
                self.errors += 1
                log.error("raw archive: cannot close %s (%s)", self._path, error)
        self._writer = None
        self._stream = None
        self._path = None

    def _close_quietly(self) -> None:
        try:
            if self._stream is not None:
                self._stream.close()
        except OSError:
            pass
        self._writer = None
        self._stream = None
        self._path = None
