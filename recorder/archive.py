"""The raw archive: every byte `recorder run` receives, in hourly capture files.

Layout: `DIR/YYYY/MM/DD/YYYY-MM-DDTHH.cap.gz` (UTC hour of the receive time), in the capture
format of `recorder.capture`, so `recorder backfill DIR` can replay it after a decoder upgrade.
A file reopened within the same hour (after a restart) gets another gzip member appended.
Files older than the retention (by the hour in their name) are deleted as hours roll over.

Light on the disk: compressed bytes reach the file in whole, aligned 4 kB pages as they fill,
so each page of the file is written once, and the rest only when `flush` is called (`recorder
run` does so at each of its commits, every `commit_interval / 2` seconds), which also syncs the
file to the disk. So a crash or power cut loses at most the raw bytes since the last flush;
appending a few hundred bytes every few seconds would instead rewrite the file's last page
each time the kernel wrote it back.

Archive problems (full disk, permissions) are logged and counted, never fatal: the readings
themselves are already safe in the outbox.
"""

from __future__ import annotations

import logging
import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from recorder.capture import CaptureWriter

log = logging.getLogger(__name__)
PAGE_SIZE = 4096  # the kernel's page: the unit in which a write dirties the page cache
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


class PageWriter:
    """A binary stream that hands the file only whole pages, aligned to the file's offset, and
    the incomplete last page only on `flush`."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._offset = file.seek(0, os.SEEK_END)
        self._pending = bytearray()

    def write(self, data: bytes) -> int:
        self._pending += data
        whole = (self._offset + len(self._pending)) // PAGE_SIZE * PAGE_SIZE - self._offset
        if whole > 0:
            self._write(whole)
        return len(data)

    def flush(self) -> None:
        if self._pending:
            self._write(len(self._pending))

    def sync(self) -> None:
        os.fsync(self._file.fileno())

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._file.close()

    def _write(self, size: int) -> None:
        data = bytes(self._pending[:size])
        done = 0
        while done < size:  # a raw file may take less than it was given
            done += self._file.write(data[done:])
        del self._pending[:size]
        self._offset += size


class Archive:
    def __init__(self, directory: Path, retention_days: int) -> None:
        self.directory = directory
        self.retention = timedelta(days=retention_days) if retention_days > 0 else None
        self.errors = 0
        self.bytes = 0
        self._path: Path | None = None
        self._stream: PageWriter | None = None
        self._writer: CaptureWriter | None = None
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
            self._failing_since = None
        except OSError as error:
            self._failed(error)

    def flush(self) -> None:
        """Everything written so far into the file, and the file onto the disk."""
        if self._writer is None or self._stream is None:
            return
        try:
            self._writer.flush()
            self._stream.sync()
        except OSError as error:
            self._failed(error)

    def _failed(self, error: OSError) -> None:
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
        self._stream = PageWriter(path.open("ab", buffering=0))
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
