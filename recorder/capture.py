"""Capture files: timestamped raw bus bytes, compatible with the taptap library's format.

A capture is a gzip stream whose header carries the comment `taptap capture`, holding records

    data length (u16 BE) | milliseconds since the Unix epoch (u64 BE) | data

Data longer than 65535 bytes is split into several records with the same timestamp.

The writer flushes the compressor on request (`flush()`), so a process killed between flushes
loses at most what it wrote since the last one, and the file stays readable: the reader accepts
a stream that ends without a gzip trailer (reporting it) and several gzip members one after
another (what appending to an existing file produces).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from recorder.errors import CaptureFormatError
from recorder.timestamps import from_millis, to_millis

GZIP_COMMENT = b"taptap capture"
RECORD_HEADER = struct.Struct(">HQ")
MAX_RECORD_DATA = 0xFFFF
_GZIP_MAGIC = b"\x1f\x8b"
_READ_SIZE = 1 << 16
# A record's time is its predecessor's plus one of these steps when it follows within a few
# seconds (nearly always): one exact addition instead of building a timedelta per record, which
# cost a backfill about a tenth of its decoding. A record in the same millisecond shares its
# predecessor's datetime object (the placement step converts each object once). Each step is
# made the first time a record needs it, so importing this module costs nothing for it.
_STEP_LIMIT = 4096  # ms
_STEPS: dict[int, timedelta] = {}


def encode_records(data: bytes, at: datetime) -> bytes:
    """The record bytes for `data` received at `at` (split if longer than a record holds)."""
    stamp = to_millis(at)
    parts = []
    for offset in range(0, max(len(data), 1), MAX_RECORD_DATA):
        chunk = data[offset : offset + MAX_RECORD_DATA]
        parts.append(RECORD_HEADER.pack(len(chunk), stamp) + chunk)
    return b"".join(parts)


class ByteStream(Protocol):
    """Where a `CaptureWriter` writes: a binary file, or anything with `write` and `flush`."""

    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


class CaptureWriter:
    """Writes one gzip member with the `taptap capture` comment to a binary stream."""

    def __init__(self, stream: ByteStream, *, level: int = 6, mtime: int = 0) -> None:
        self._stream = stream
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        self._crc = 0
        self._size = 0
        self._closed = False
        # gzip header: magic, deflate, FLG.FCOMMENT, mtime, XFL, OS=unknown, comment + NUL
        stream.write(
            _GZIP_MAGIC + b"\x08\x10" + struct.pack("<I", mtime) + b"\x00\xff" + GZIP_COMMENT + b"\x00"
        )

    def write(self, data: bytes, at: datetime) -> None:
        if not data:
            return
        records = encode_records(data, at)
        self._crc = zlib.crc32(records, self._crc)
        self._size += len(records)
        self._stream.write(self._compressor.compress(records))

    def flush(self) -> None:
        """Make everything written so far decodable from the file (a sync flush)."""
        self._stream.write(self._compressor.flush(zlib.Z_SYNC_FLUSH))
        self._stream.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stream.write(self._compressor.flush(zlib.Z_FINISH))
        self._stream.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))
        self._stream.flush()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_capture(path: Path, chunks: list[tuple[bytes, datetime]]) -> None:
    with path.open("wb") as stream, CaptureWriter(stream) as writer:
        for data, at in chunks:
            writer.write(data, at)


class CaptureDecoder:
    """Turns a capture's bytes, fed in blocks of any size as they come, into records.

    The one place the capture format is parsed: `CaptureReader` feeds it a file, a
    `tcp://...?format=capture` source the bytes of a connection. Raises CaptureFormatError
    naming `name` and the offset; the records that preceded the error are in the caller's lists.
    After `finish()`, `truncated` tells whether the input ended inside a record or without a
    gzip trailer (typical of a writer that was killed, or a connection that was cut).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.truncated = False
        self.compressed_offset = 0
        self._decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._member_has_data = False
        self._head = b""  # the first bytes, until the gzip magic can be checked
        self._started = False
        self._ended = False  # padding after the last member: the rest is ignored
        self._pending = b""
        self._offset = 0  # uncompressed offset of `_pending`
        # The last record's stamp and time (to begin with, a stamp no record is a step after).
        self._previous: tuple[int, datetime] = (-(1 << 63), from_millis(0))

    def feed(self, block: bytes, chunks: list[bytes], times: list[datetime]) -> None:
        """Decode `block`, appending every record it completes to `chunks` and `times`."""
        if not self._started:
            self._head += block
            if len(self._head) < len(_GZIP_MAGIC):
                return
            if not self._head.startswith(_GZIP_MAGIC):
                raise CaptureFormatError(f"{self.name}: not a capture file (no gzip header at offset 0)")
            self._started = True
            block, self._head = self._head, b""
        while block and not self._ended:
            try:
                output = self._decompressor.decompress(block)
            except zlib.error as error:
                where = f"near byte offset {self.compressed_offset}"
                raise CaptureFormatError(f"{self.name}: corrupt compressed data {where} ({error})") from None
            self._member_has_data = True
            if output:
                self._records(output, chunks, times)
            if not self._decompressor.eof:
                self.compressed_offset += len(block)
                return
            # One member finished; anything after it should be the next member.
            self.compressed_offset += len(block) - len(self._decompressor.unused_data)
            block = self._decompressor.unused_data
            self._decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self._member_has_data = False
            if block and not block.startswith(_GZIP_MAGIC[: len(block)]):
                self._ended = True  # trailing padding after the last member

    def finish(self, chunks: list[bytes], times: list[datetime]) -> None:
        """The input has ended: deliver what a member cut short still holds, set `truncated`."""
        if not self._started:
            if self._head:
                raise CaptureFormatError(f"{self.name}: not a capture file (no gzip header at offset 0)")
            raise CaptureFormatError(f"{self.name}: empty file, expected a gzip capture")
        if self._member_has_data and not self._ended:
            self.truncated = True  # the last member has no trailer: cut short while writing
            tail = self._decompressor.flush()
            if tail:
                self._records(tail, chunks, times)
        if self._pending:
            self.truncated = True

    def _records(self, block: bytes, chunks: list[bytes], times: list[datetime]) -> None:
        pending = self._pending + block if self._pending else block
        header = RECORD_HEADER.size
        unpack = RECORD_HEADER.unpack_from
        position = 0
        length = len(pending)
        steps = _STEPS
        previous_stamp, previous_time = self._previous
        try:
            while length - position >= header:
                size, stamp = unpack(pending, position)
                end = position + header + size
                if end > length:
                    break
                if stamp > 8_000_000_000_000:  # after year 2223: not a capture record
                    raise CaptureFormatError(
                        f"{self.name}: implausible record timestamp at uncompressed offset "
                        f"{self._offset + position}: not a capture file, or corrupt"
                    )
                chunks.append(pending[position + header : end])
                step = stamp - previous_stamp
                if step == 0:
                    times.append(previous_time)
                else:
                    if 0 < step < _STEP_LIMIT:
                        delta = steps.get(step)
                        if delta is None:
                            delta = steps[step] = timedelta(milliseconds=step)
                        previous_time = previous_time + delta
                    else:
                        previous_time = from_millis(stamp)
                    previous_stamp = stamp
                    times.append(previous_time)
                position = end
        finally:
            self._previous = (previous_stamp, previous_time)
            self._offset += position
            self._pending = pending[position:]


class CaptureReader:
    """Iterates `(data, received_at)` records. Raises CaptureFormatError naming file and offset.

    After iteration, `truncated` tells whether the file ended inside a record or without a gzip
    trailer (typical of a recorder that was killed): everything before that point was returned.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.truncated = False
        self.records = 0
        self.bytes = 0
        self.compressed_offset = 0

    def __iter__(self) -> Iterator[tuple[bytes, datetime]]:
        for chunks, times in self.batches():
            yield from zip(chunks, times, strict=True)

    def batches(self, records: int = 512) -> Iterator[tuple[list[bytes], list[datetime]]]:
        """The records in groups of up to `records`: (chunks, receive times). A replay takes
        them this way, with far less overhead per record than one at a time. Before an error is
        raised, the records that preceded it are delivered."""
        name = str(self.path)
        try:
            stream = self.path.open("rb")
        except OSError as error:
            raise CaptureFormatError(f"{name}: cannot open capture file ({error.strerror})") from None
        decoder = CaptureDecoder(name)
        chunks: list[bytes] = []
        times: list[datetime] = []
        with stream:
            try:
                while block := stream.read(_READ_SIZE):
                    try:
                        decoder.feed(block, chunks, times)
                    finally:
                        self.compressed_offset = decoder.compressed_offset
                    while len(chunks) >= records:
                        yield from self._deliver(chunks[:records], times[:records])
                        del chunks[:records], times[:records]
                decoder.finish(chunks, times)
            except CaptureFormatError:
                yield from self._deliver(chunks, times)
                raise
            finally:
                self.truncated = decoder.truncated
            yield from self._deliver(chunks, times)

    def _deliver(
        self, chunks: list[bytes], times: list[datetime]
    ) -> Iterator[tuple[list[bytes], list[datetime]]]:
        """Count and yield a batch: lists the reader no longer changes (slices, or its last)."""
        if chunks:
            self.records += len(chunks)
            self.bytes += sum(map(len, chunks))
            yield chunks, times


def looks_like_capture(path: Path) -> bool:
    """Cheap format sniff: a gzip file whose header comment is `taptap capture`, or whose first
    record parses with a plausible timestamp."""
    try:
        with path.open("rb") as stream:
            head = stream.read(64)
    except OSError:
        return False
    if not head.startswith(_GZIP_MAGIC):
        return False
    if len(head) > 3 and head[3] & 0x10 and GZIP_COMMENT in head:
        return True
    try:
        for data, at in CaptureReader(path):
            return 2000 <= at.year <= 2200 and len(data) >= 0
    except CaptureFormatError:
        return False
    return False
