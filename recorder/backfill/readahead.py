"""Bus files to frame bodies, in this process or a child: the backfill's read-ahead.

Theory of operation
-------------------
A backfill is CPU-bound in Python, and one Python process runs on one core. Reading bus files
(gunzip, capture record parsing, raw chunk timing) and the link layer (frame delimiting,
unescaping, checksums) need nothing that the rest of the decoder learns, so they can run ahead
in another process while the main process decodes transport, packets and identity in stream
order and the database ingests. That moves about a quarter of the per-report work off the main
process, at the price of 12-19 % more CPU in all (frames cross a process boundary): a gain
where a core is spare, a loss where InfluxDB already fills the other one
(`read_ahead_pays`).

The link decoder here drops receive requests unread (`LinkDecoder(drop_type=...)`): they are
half of all frames, and all one carries is the poll's packet number, which the transport only
shows in diagnostics (`peek activity`); retransmissions are recognised by their bytes, not their
number. A corrupt request is dropped either way, so the frames delivered are exactly the
canonical ones minus the requests; only the link and request counters differ, and a backfill
reports neither.

`read_frames` does the work and yields, per input file in order, `Frames` (the bodies that a
batch of records completed, each with the receive time of the record that completed it, as
`delimit_chunks` stamps them) and then one `FileDone` (whether the rest of the file had to be
skipped, and why). `read_frames_in_child` runs the same generator in a spawned process and
relays its items through a bounded queue, so the results are identical by construction: the
same `LinkDecoder` sees the same bytes in the same order. Capture files continue each other
(the archive rotates mid-stream), raw dumps do not: a raw file, and whatever follows one,
starts a fresh link decoder, and the consumer resets its transport at the same boundaries.

The child never outlives the backfill: it is a daemon, and it is terminated (by its own pid) if
the consumer stops early. If it dies, the consumer gets a RecorderError, not a hang.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import traceback
import zlib
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from recorder.capture import CaptureReader
from recorder.errors import CaptureFormatError, RecorderError
from recorder.protocol.gateway.link import LinkDecoder
from recorder.protocol.gateway.transport import RECEIVE_REQUEST
from recorder.protocol.stack import delimit_chunks
from recorder.sources import RAW_CHUNK_BYTES, RawSource, line_rate_time, open_dump

RECORDS_PER_BATCH = 512
# Bus input from which reading ahead in a child process pays for its start-up (~2 days of capture).
READ_AHEAD_BYTES = 16_000_000
_QUEUE_DEPTH = 16  # batches in flight: enough to ride out a slow write, little memory


class BusFile(Protocol):
    """What the read-ahead needs of an input file (backfill's `InputFile`)."""

    @property
    def path(self) -> Path: ...

    @property
    def format(self) -> str: ...


@dataclass
class Frames:
    """The frame bodies a batch of records completed, each with its receive time."""

    bodies: list[bytes]
    times: list[datetime]


@dataclass
class FileDone:
    """The end of one input file: whether (and why) its rest was skipped, and its bus bytes."""

    error: str | None  # why the rest of the file was skipped (what came before was delivered)
    truncated: bool = False  # a capture file cut short while it was being written
    bus_bytes: int = 0  # the bus bytes the file held (capture record data, a dump's content)


FrameStream = Generator[Frames | FileDone, None, None]


def _raw_batches(path: Path, start: datetime | None) -> Iterator[tuple[list[bytes], list[datetime]]]:
    """A raw dump in line-rate chunks, each stamped with the time its last byte arrived, in
    groups as `CaptureReader.batches` gives them. Times as `RawSource` gives them: from the
    uncompressed length when the dump is gzip-compressed."""
    origin = start or RawSource(f"raw:{path}", path).start_time()  # default: ends at its mtime
    offset = 0
    with open_dump(path) as stream:
        while data := stream.read(RAW_CHUNK_BYTES * RECORDS_PER_BATCH):
            chunks = [data[at : at + RAW_CHUNK_BYTES] for at in range(0, len(data), RAW_CHUNK_BYTES)]
            times = []
            for chunk in chunks:
                offset += len(chunk)
                times.append(line_rate_time(origin, offset))
            yield chunks, times


def read_frames(files: Sequence[BusFile], raw_start: datetime | None) -> FrameStream:
    """Frame bodies of each bus file in turn, then its `FileDone` (see module docstring)."""
    link = LinkDecoder(drop_type=RECEIVE_REQUEST)
    previous_format = None
    for item in files:
        if item.format == "raw" or previous_format == "raw":
            link = LinkDecoder(drop_type=RECEIVE_REQUEST)
        previous_format = item.format
        reader = CaptureReader(item.path) if item.format == "capture" else None
        batches = reader.batches(RECORDS_PER_BATCH) if reader else _raw_batches(item.path, raw_start)
        error = None
        bus_bytes = 0
        try:
            for chunks, times in batches:
                bus_bytes += sum(map(len, chunks))
                bodies, body_times = delimit_chunks(link, chunks, times)
                if bodies:
                    yield Frames(bodies, body_times)
        except (CaptureFormatError, OSError, EOFError, zlib.error) as failure:
            error = str(failure)
        yield FileDone(error, bool(reader and reader.truncated), bus_bytes)


def _child(files: Sequence[BusFile], raw_start: datetime | None, out: Any) -> None:
    # Ctrl-C reaches the whole process group: the parent decides what it means and ends us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for item in read_frames(files, raw_start):
            out.put(item)
        out.put(None)
    except BaseException:  # anything else is a bug: hand it to the parent, which raises it
        out.put(f"the read-ahead process failed:\n{traceback.format_exc()}")


def read_frames_in_child(files: Sequence[BusFile], raw_start: datetime | None) -> FrameStream:
    """`read_frames` run in a spawned child process (spawn, not fork: the backfill has threads).

    Spawning re-imports the program's main module in the child, so a script that runs a
    backfill needs the usual `if __name__ == "__main__":` guard (the `recorder` CLI has it).
    """
    context = multiprocessing.get_context("spawn")
    channel = context.Queue(maxsize=_QUEUE_DEPTH)
    process = context.Process(
        target=_child, args=(files, raw_start, channel), name="recorder-readahead", daemon=True
    )
    process.start()
    try:
        while True:
            try:
                item = channel.get(timeout=1.0)
            except queue.Empty:
                if not process.is_alive():
                    raise RecorderError(
                        f"the read-ahead process ended unexpectedly (exit code {process.exitcode})"
                    ) from None
                continue
            if item is None:
                return
            if isinstance(item, str):
                raise RecorderError(item)
            yield item
    finally:
        if process.is_alive():
            process.terminate()
        process.join(timeout=10)
        channel.close()


def read_ahead_pays(bus_bytes: int, cores: int, database_here: bool) -> bool:
    """Whether the read-ahead child should run (module docstring).

    Measured on a 2-core machine with a simulated week: with InfluxDB elsewhere (a dry run) the
    child makes the backfill 18-26 % faster; with InfluxDB on the same two cores it makes it
    6-13 % slower (`benchmarks/backfill.py`, two runs of two rounds), because the machine is then
    CPU-bound and the child costs 12-19 % more CPU in all (frames cross a process boundary).
    So: a large input, and a core to spare for it.
    """
    if bus_bytes < READ_AHEAD_BYTES or cores < 2:
        return False
    return cores >= 4 or not database_here
