from __future__ import annotations

import gzip
from datetime import timedelta
from pathlib import Path

import pytest

from recorder.capture import CaptureReader, CaptureWriter, looks_like_capture, write_capture
from recorder.errors import CaptureFormatError
from recorder.timestamps import to_millis
from tests.helpers import T0


def test_round_trip_with_the_gzip_comment_and_millisecond_times(tmp_path: Path) -> None:
    path = tmp_path / "a.cap.gz"
    chunks = [(b"\x00\xff\xff\x7e\x07", T0), (b"x" * 70_000, T0 + timedelta(milliseconds=1.7))]
    write_capture(path, chunks)
    assert path.read_bytes()[3] & 0x10 and b"taptap capture\x00" in path.read_bytes()[:40]
    assert gzip.decompress(path.read_bytes())[:10] == (5).to_bytes(2, "big") + to_millis(T0).to_bytes(
        8, "big"
    )
    records = list(CaptureReader(path))
    assert b"".join(data for data, _ in records) == b"".join(data for data, _ in chunks)
    assert [at for _, at in records] == [T0, T0 + timedelta(milliseconds=1), T0 + timedelta(milliseconds=1)]
    assert looks_like_capture(path)


def test_appended_member_and_cut_short_file_keep_everything_written(tmp_path: Path) -> None:
    path = tmp_path / "b.cap.gz"
    write_capture(path, [(b"first", T0)])
    with path.open("ab") as stream:
        writer = CaptureWriter(stream)
        writer.write(b"second", T0 + timedelta(seconds=1))
        writer.flush()  # flushed but never closed: a recorder killed mid-hour
    reader = CaptureReader(path)
    assert [data for data, _ in reader] == [b"first", b"second"]
    assert reader.truncated


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"plain text, not gzip", "no gzip header"),
        (b"", "empty file"),
        (gzip.compress(b"\x00\x01" + b"\xff" * 8 + b"z", mtime=0), "implausible record timestamp"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.cap.gz"
    path.write_bytes(content)
    with pytest.raises(CaptureFormatError, match=message) as raised:
        list(CaptureReader(path))
    assert str(path) in str(raised.value)
    assert not looks_like_capture(path)


def test_corrupt_compressed_data_reports_an_offset(tmp_path: Path) -> None:
    path = tmp_path / "c.cap.gz"
    write_capture(path, [(bytes(range(256)) * 200, T0)])
    data = bytearray(path.read_bytes())
    data[40:60] = b"\xff" * 20
    path.write_bytes(bytes(data))
    with pytest.raises(CaptureFormatError, match="offset"):
        list(CaptureReader(path))


@pytest.mark.parametrize("size", [1, 3, 512])
def test_batches_hold_every_record_and_deliver_those_before_an_error(tmp_path: Path, size: int) -> None:
    records = [(bytes([n]) * (n % 7 + 1), T0 + timedelta(milliseconds=n)) for n in range(20)]
    path = tmp_path / "d.cap.gz"
    write_capture(path, records)
    reader = CaptureReader(path)
    batches = list(reader.batches(size))
    assert all(len(chunks) == len(times) <= size for chunks, times in batches)
    assert [r for chunks, times in batches for r in zip(chunks, times, strict=True)] == records
    assert (reader.records, reader.bytes) == (20, sum(len(data) for data, _ in records))
    # A record with an impossible timestamp after the first 7: those 7 come out, then the error.
    body = gzip.decompress(path.read_bytes())
    cut = sum(10 + len(data) for data, _ in records[:7])
    path.write_bytes(gzip.compress(body[:cut] + b"\x00\x01" + b"\xff" * 8 + b"z" + body[cut:]))
    delivered = []
    with pytest.raises(CaptureFormatError, match="implausible record timestamp at uncompressed offset"):
        for chunks, times in CaptureReader(path).batches(size):
            delivered += zip(chunks, times, strict=True)
    assert delivered == records[:7]
