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

Archive problems (permissions, I/O errors) are logged and counted, never fatal: the raw bytes
are a second copy, the readings go their own way (memory, outbox, InfluxDB).

Disk space: the raw archive gives way first. It pauses (writes nothing, counts the bytes it
skips) when its filesystem has less than `reserve_bytes` free (5% of the filesystem, at most
64 MB: room kept for the state database, which usually shares the SD card), when a write of its
own fails for lack of space, and when the recorder cannot commit readings on the same
filesystem (`give_way`, which also deletes the oldest archive file, one per attempt, so that
readings are never dropped while raw bytes still take up space there). It resumes by itself
once twice the reserve is free again and nothing else is short of space.
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
from recorder.diskspace import RETRY_EVERY, DiskSpace, describe_bytes, free_bytes, is_disk_full

log = logging.getLogger(__name__)
PAGE_SIZE = 4096  # the kernel's page: the unit in which a write dirties the page cache
RESERVE_FRACTION = 0.05
RESERVE_MAX = 64 * 1024 * 1024
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


def reserve_bytes(directory: Path) -> int:
    """Free space the archive leaves to others on its filesystem (see the module docstring)."""
    for candidate in (directory, *directory.parents):
        try:
            stat = os.statvfs(candidate)
        except OSError:
            continue
        return min(int(stat.f_blocks * stat.f_frsize * RESERVE_FRACTION), RESERVE_MAX)
    return RESERVE_MAX


class Archive:
    """Hourly raw capture files under `directory`, pruned after `retention_days`."""

    def __init__(self, directory: Path, retention_days: int, *, disk: DiskSpace | None = None) -> None:
        self.directory = directory
        self.retention = timedelta(days=retention_days) if retention_days > 0 else None
        self.disk = disk or DiskSpace()
        self.errors = 0
        self.bytes = 0
        self.paused = False  # giving way to readings: the disk is (nearly) full
        self.skipped_bytes = 0  # received while paused: not archived
        self.removed_for_space = 0  # archive files deleted to make room for readings
        self._checked_at = time.monotonic()
        self._cut_short: Path | None = None  # an hour's file left without its gzip end
        self._resumed = False
        self._path: Path | None = None
        self._stream: PageWriter | None = None
        self._writer: CaptureWriter | None = None
        self._failing_since: float | None = None

    def write(self, data: bytes, at: datetime) -> None:
        if not data:
            return
        if self.paused and not self._may_resume():
            self.skipped_bytes += len(data)
            return
        try:
            path = archive_file(self.directory, at)
            if path != self._path:
                if path == self._cut_short:  # appending after a member without its end breaks it
                    self.skipped_bytes += len(data)
                    return
                self._rotate(path, at)
                if self._writer is None:  # paused for want of space
                    self.skipped_bytes += len(data)
                    return
            assert self._writer is not None
            self._writer.write(data, at)
            self.bytes += len(data)
            self._failing_since = None
            if self._resumed:  # a write went through: no longer short of space
                self._resumed = False
                self.disk.recovered(self.directory, "the raw archive")
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
            return
        self.disk.recovered(self.directory, "the raw archive")
        self._check_space()

    def give_way(self) -> bool:
        """Readings on this filesystem cannot be committed for lack of space: stop archiving and
        delete the oldest archive file. Returns whether a file was deleted."""
        self._pause("the state database is out of space")
        for _hour, path in archive_files(self.directory):
            try:
                size = path.stat().st_size
                path.unlink()
            except OSError as error:
                log.warning("raw archive: cannot remove %s to make room (%s)", path, error)
                continue
            self.removed_for_space += 1
            log.warning(
                "raw archive: removed %s (%s) to make room for readings: the disk is full",
                path,
                describe_bytes(size),
            )
            self._remove_empty_parents(path)
            return True
        return False

    def _check_space(self) -> None:
        free = free_bytes(self.directory)
        reserve = reserve_bytes(self.directory)
        if free is not None and free < reserve:
            kept = describe_bytes(reserve)
            self._pause(f"only {describe_bytes(free)} free, under the {kept} kept for readings")

    def _pause(self, reason: str) -> None:
        self._checked_at = time.monotonic()
        if self.paused:
            return
        self.paused = True
        self.close()
        log.warning(
            "raw archive paused under %s: %s; readings come first. It resumes when %s are free",
            self.directory,
            reason,
            describe_bytes(2 * reserve_bytes(self.directory)),
        )

    def _may_resume(self) -> bool:
        now = time.monotonic()
        if now - self._checked_at < RETRY_EVERY:
            return False
        self._checked_at = now
        free = free_bytes(self.directory)
        others_full = self.disk.full and not self.disk.is_full(self.directory)
        if others_full or free is None or free < 2 * reserve_bytes(self.directory):
            return False
        self.paused = False
        self._resumed = True
        log.warning(
            "raw archive resumed under %s (%s free; %s were not archived meanwhile)",
            self.directory,
            describe_bytes(free),
            describe_bytes(self.skipped_bytes),
        )
        return True

    def _failed(self, error: OSError) -> None:
        self.errors += 1
        self._close_quietly()
        if is_disk_full(error):
            self.disk.failed(self.directory, "the raw archive", "archiving paused; readings are unaffected")
            self._pause(f"a write failed ({error.strerror})")
            return
        now = time.monotonic()
        if self._failing_since is None or now - self._failing_since > 3600:
            self._failing_since = now
            log.error(
                "raw archive: cannot write under %s (%s); readings are unaffected", self.directory, error
            )

    def _rotate(self, path: Path, at: datetime) -> None:
        self.close()
        self._check_space()
        if self.paused:
            return
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
                self._remove_empty_parents(path)
            except OSError as error:
                log.warning("raw archive: cannot remove %s (%s)", path, error)

    def _remove_empty_parents(self, path: Path) -> None:
        try:
            for parent in (path.parent, path.parent.parent, path.parent.parent.parent):
                if parent != self.directory and parent.is_dir() and not any(parent.iterdir()):
                    parent.rmdir()
        except OSError:
            pass

    def close(self) -> None:
        if self._writer is not None and self._stream is not None:
            try:
                try:
                    self._writer.close()
                finally:
                    self._stream.close()
            except OSError as error:
                self.errors += 1
                self._cut_short = self._path
                log.error("raw archive: cannot close %s (%s)", self._path, error)
        self._writer = None
        self._stream = None
        self._path = None

    def _close_quietly(self) -> None:
        self._cut_short = self._path
        try:
            if self._stream is not None:
                self._stream.close()
        except OSError:
            pass
        self._writer = None
        self._stream = None
        self._path = None
