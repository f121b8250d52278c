"""The raw archive's write pattern: whole pages until a flush, readable after it (real files)."""

from __future__ import annotations

import os
import random
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from recorder.archive import PAGE_SIZE, Archive, PageWriter, archive_file
from recorder.capture import CaptureReader
from tests.helpers import T0


class RecordingFile:
    """A real file that remembers where each write landed."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.writes: list[tuple[int, int]] = []

    def write(self, data: bytes) -> int:
        self.writes.append((self.file.tell(), len(data)))
        return self.file.write(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.file.seek(offset, whence)

    def fileno(self) -> int:
        return self.file.fileno()

    def close(self) -> None:
        self.file.close()


def test_pages_reach_the_file_whole_and_once_until_a_flush(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"x" * 1000)  # appending to a file whose end is not on a page boundary
    recording = RecordingFile(path.open("ab", buffering=0))
    writer = PageWriter(recording)  # type: ignore[arg-type]
    generator = random.Random(3)
    payload = bytes(generator.getrandbits(8) for _ in range(20_000))
    for start in range(0, len(payload), 300):
        writer.write(payload[start : start + 300])
    assert recording.writes
    pages: list[int] = []
    for offset, size in recording.writes:
        assert (offset + size) % PAGE_SIZE == 0, "only whole pages before a flush"
        pages += range(offset // PAGE_SIZE, (offset + size + PAGE_SIZE - 1) // PAGE_SIZE)
    assert len(pages) == len(set(pages)), "each page is handed to the file once"
    assert path.stat().st_size % PAGE_SIZE == 0
    writer.flush()
    writer.sync()
    assert path.read_bytes() == b"x" * 1000 + payload
    writer.close()


def test_an_archive_flushed_at_a_commit_point_replays_everything_so_far(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive", retention_days=0)
    chunks = [(os.urandom(200), T0 + timedelta(seconds=n)) for n in range(100)]
    for data, at in chunks:
        archive.write(data, at)
    path = archive_file(tmp_path / "archive", T0)
    before_flush = path.stat().st_size
    archive.flush()  # what `recorder run` does every commit interval; nothing closed
    assert path.stat().st_size > before_flush
    reader = CaptureReader(path)
    assert list(reader) == chunks  # readable as is: a crash from here on loses nothing of these
    assert reader.truncated  # no gzip trailer yet: the member is still open
    archive.close()
    assert list(CaptureReader(path)) == chunks
