"""Where bus bytes come from. The only input IO in the recorder.

Every source yields `(data, received_at)` chunks. Live sources (serial, TCP) stamp each chunk
with the time it arrived, read-only, and reconnect forever with capped exponential backoff;
they also yield *empty* chunks while the line is quiet so the caller can flush, feed a watchdog
and notice shutdown. Finite sources (capture files, raw dumps, the simulator) replay their own
timestamps and end.

URLs:

    /dev/ttyUSB0, serial:///dev/ttyUSB0   RS-485 adapter, 38400 8N1 (pyserial)
    tcp://HOST[:PORT]                      transparent RS-485-to-Ethernet converter, default 7160
    tcp://HOST[:PORT]?format=capture       a timestamped stream in the capture format (below)
    capture:PATH                           capture file (recorder.capture), replayed with its times
    raw:PATH                               plain byte dump (or gzip of one); times at line rate
    sim:?nodes=135&duration=2h&...         the built-in simulator (see recorder.sim.source)

Nothing in this module ever writes to a serial port or a socket: the recorder must be invisible
on the bus (NOTES 16). TCP connections enable keepalive, and a no-data watchdog closes and
reopens a connection that has gone silent (converters leave half-open sessions, NOTES 15).

`?format=capture` is for replaying a timestamped stream over the network (a capture file piped
to a socket, the soak's converter stand-in): each connection carries a capture (recorder.capture,
one gzip member, sync-flushed as it goes) and every chunk is stamped with its record's time,
decoded by the same `CaptureDecoder` as a capture file, instead of with the wall clock. Only the
bytes' times change: reconnects, the watchdog and the recorder's commit timers keep the real
(monotonic) clock. While nothing arrives the stream's time stands still at its last record (the
idle chunks carry it; before the first record there are none), so a replay of last year never
mixes with today's date. A partial record when a connection ends is dropped with the connection,
as bytes in flight are on a raw stream.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import os
import socket
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl, urlsplit

from recorder.capture import CaptureDecoder, CaptureReader
from recorder.errors import CaptureFormatError, SourceError
from recorder.source_base import Chunk, Source, SourceStatus

__all__ = ["Chunk", "Source", "SourceStatus"]  # defined in recorder.source_base, used from here

log = logging.getLogger(__name__)

BAUD_RATE = 38400
LINE_RATE_BYTES_PER_SECOND = BAUD_RATE // 10  # 8N1: 10 bits on the wire per byte
DEFAULT_TCP_PORT = 7160
RAW_CHUNK_BYTES = 256  # ~67 ms of bus time per synthesised timestamp


def utc_now() -> datetime:
    """The single place a source reads the wall clock (live sources only)."""
    return datetime.now(UTC)


class Connection(Protocol):
    def read(self, timeout: float) -> bytes:
        """Bytes received within `timeout` seconds (b"" if none). Raises OSError on loss."""

    def close(self) -> None: ...


@dataclass
class ReconnectPolicy:
    initial_delay: float = 1.0
    max_delay: float = 60.0
    idle_timeout: float = 90.0  # no byte at all for this long: assume a dead connection
    tick: float = 0.5  # how often an idle read returns control to the caller


class LiveSource(Source):
    live = True

    def __init__(self, url: str, policy: ReconnectPolicy | None = None) -> None:
        super().__init__(url)
        self.policy = policy or ReconnectPolicy()
        # Diagnostics want a typo in a host or port reported, not retried forever; a service
        # wants the opposite. Once connected, both reconnect forever.
        self.fail_fast = False

    def connect(self) -> Connection:
        raise NotImplementedError

    def chunks(self) -> Iterator[Chunk]:
        """Yield data forever, reconnecting as needed, until `stop()`."""
        policy = self.policy
        delay = policy.initial_delay
        status = self.status
        while not self.stop_event.is_set():
            try:
                connection = self.connect()
                self.connected()
            except (OSError, SourceError) as error:
                if self.fail_fast and status.connects == 0:
                    raise SourceError(f"cannot connect to {self.describe()}: {error}") from None
                status.state = "reconnecting"
                status.last_error = str(error)
                log.warning(
                    "source %s: cannot connect (%s); retrying in %.0f s", self.describe(), error, delay
                )
                yield from self._idle_for(delay)
                delay = min(delay * 2, policy.max_delay)
                continue
            status.state = "connected"
            status.connects += 1
            log.info("source %s: connected", self.describe())
            received_any = False
            quiet_since = time.monotonic()
            try:
                while not self.stop_event.is_set():
                    data = connection.read(policy.tick)
                    if data:
                        received_any = True
                        quiet_since = time.monotonic()
                        for chunk in self.stamped(data):
                            status.last_data_at = chunk[1]
                            status.bytes += len(chunk[0])
                            yield chunk
                        continue
                    if time.monotonic() - quiet_since > policy.idle_timeout:
                        status.watchdog_reconnects += 1
                        raise TimeoutError(f"no data for {policy.idle_timeout:.0f} s")
                    yield from self._idle_chunk()
            except (OSError, SourceError) as error:
                status.disconnects += 1
                status.state = "reconnecting"
                status.last_error = str(error) or type(error).__name__
                log.warning("source %s: connection lost (%s)", self.describe(), status.last_error)
            finally:
                connection.close()
            if received_any:
                delay = policy.initial_delay
            yield from self._idle_for(delay)
            if not received_any:
                delay = min(delay * 2, policy.max_delay)
        status.state = "finished"

    def _idle_for(self, seconds: float) -> Iterator[Chunk]:
        deadline = time.monotonic() + seconds
        while not self.stop_event.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.stop_event.wait(min(remaining, self.policy.tick))
            yield from self._idle_chunk()

    def connected(self) -> None:
        """A new connection is open (a stream format starts afresh on each)."""

    def stamped(self, data: bytes) -> list[Chunk]:
        """The chunks that bytes just read from the connection make: stamped with the wall clock."""
        return [(data, utc_now())]

    def now(self) -> datetime | None:
        """The source's time while nothing arrives (None: none yet, so no idle chunk)."""
        return utc_now()

    def _idle_chunk(self) -> Iterator[Chunk]:
        at = self.now()
        if at is not None:
            yield b"", at


# ------------------------------------------------------------------------------------------------
# Serial


class _SerialConnection:
    def __init__(self, port: object) -> None:
        self._port = port

    def read(self, timeout: float) -> bytes:
        import serial

        port = self._port
        assert isinstance(port, serial.Serial)
        port.timeout = timeout
        try:
            data = port.read(max(1, port.in_waiting))
        except serial.SerialException as error:
            raise OSError(str(error)) from None
        return bytes(data)

    def close(self) -> None:
        import serial

        port = self._port
        assert isinstance(port, serial.Serial)
        port.close()


class SerialSource(LiveSource):
    def __init__(self, url: str, device: str, policy: ReconnectPolicy | None = None) -> None:
        super().__init__(url, policy)
        self.device = device

    def describe(self) -> str:
        return f"serial {self.device}"

    def check(self) -> None:
        if not os.path.exists(self.device):
            raise SourceError(f"serial port {self.device} does not exist (see `recorder list-serial-ports`)")

    def connect(self) -> Connection:
        import serial

        try:
            # Read-only use: we never call write(). No flow control, so no line is driven.
            port = serial.Serial(
                self.device,
                baudrate=BAUD_RATE,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                timeout=0.5,
                xonxoff=False,
                rtscts=False,
                dsrdtr=False,
            )
        except (serial.SerialException, ValueError) as error:
            raise SourceError(f"cannot open serial port {self.device}: {error}") from None
        return _SerialConnection(port)


# ------------------------------------------------------------------------------------------------
# TCP


class _TcpConnection:
    def __init__(self, sock: socket.socket) -> None:
        self._socket = sock

    def read(self, timeout: float) -> bytes:
        self._socket.settimeout(timeout)
        try:
            data = self._socket.recv(65536)
        except TimeoutError:
            return b""
        if not data:
            raise ConnectionError("connection closed by the converter")
        return data

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.close()


def enable_keepalive(sock: socket.socket, idle: int = 30, interval: int = 10, count: int = 3) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", count)):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


class TcpSource(LiveSource):
    """A TCP client of a converter: raw bus bytes stamped on arrival, or with `capture=True` a
    timestamped stream in the capture format, each chunk stamped with its record's time."""

    def __init__(
        self,
        url: str,
        host: str,
        port: int,
        policy: ReconnectPolicy | None = None,
        *,
        capture: bool = False,
    ) -> None:
        super().__init__(url, policy)
        self.host = host
        self.port = port
        self.capture = capture
        self._decoder: CaptureDecoder | None = None
        self._stream_time: datetime | None = None  # the last record's time (capture format)

    def describe(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp {host}:{self.port}" + (" (capture format)" if self.capture else "")

    def connected(self) -> None:
        if self.capture:
            self._decoder = CaptureDecoder(self.describe())

    def stamped(self, data: bytes) -> list[Chunk]:
        if self._decoder is None:
            return super().stamped(data)
        chunks: list[bytes] = []
        times: list[datetime] = []
        try:
            self._decoder.feed(data, chunks, times)
        except CaptureFormatError as error:  # garbage on the stream: this connection is done
            raise SourceError(str(error)) from None
        finally:
            if times:
                self._stream_time = times[-1]
        return list(zip(chunks, times, strict=True))

    def now(self) -> datetime | None:
        return self._stream_time if self.capture else utc_now()

    def connect(self) -> Connection:
        sock = socket.create_connection((self.host, self.port), timeout=10)
        enable_keepalive(sock)
        # We only ever read. Shutting down our sending direction would send a FIN, which some
        # converters treat as a disconnect, so we simply never write.
        return _TcpConnection(sock)


# ------------------------------------------------------------------------------------------------
# Files


class CaptureSource(Source):
    def __init__(self, url: str, path: Path) -> None:
        super().__init__(url)
        self.path = path
        self.reader: CaptureReader | None = None

    def describe(self) -> str:
        return f"capture {self.path}"

    def check(self) -> None:
        _check_readable(self.path, "capture file")

    def chunks(self) -> Iterator[Chunk]:
        self.check()
        self.reader = CaptureReader(self.path)
        self.status.state = "connected"
        for data, at in self.reader:
            if self.stop_event.is_set():
                break
            self.status.bytes += len(data)
            self.status.last_data_at = at
            yield data, at
        if self.reader.truncated:
            log.warning("%s ends in the middle of a record (cut short while writing?)", self.path)
        self.status.state = "finished"


class RawSource(Source):
    """A plain byte dump, or a gzip of one (`dump.bin.gz`, recognised by its magic bytes).

    Times are synthesised at line rate (3840 bytes/s) from `start`, which defaults to the file's
    modification time minus the dump's duration, so that the last byte lands at the moment the
    file was last written. The duration is that of the bus bytes, so a compressed dump is
    measured by its uncompressed length (`dump_length`).
    """

    def __init__(self, url: str, path: Path, start: datetime | None = None) -> None:
        super().__init__(url)
        self.path = path
        self.start = start

    def describe(self) -> str:
        return f"raw {self.path}"

    def check(self) -> None:
        _check_readable(self.path, "raw dump")

    def start_time(self) -> datetime:
        if self.start is not None:
            return self.start
        end = datetime.fromtimestamp(self.path.stat().st_mtime, tz=UTC)
        return end - timedelta(seconds=dump_length(self.path) / LINE_RATE_BYTES_PER_SECOND)

    def chunks(self) -> Iterator[Chunk]:
        self.check()
        start = self.start_time()
        offset = 0
        self.status.state = "connected"
        with open_dump(self.path) as stream:
            while not self.stop_event.is_set():
                try:
                    data = stream.read(RAW_CHUNK_BYTES)
                except (OSError, EOFError, zlib.error) as error:
                    raise SourceError(
                        f"raw dump {self.path}: corrupt gzip data after {offset} bytes ({error})"
                    ) from None
                if not data:
                    break
                offset += len(data)
                # Each chunk is stamped with the line-rate time of its last byte.
                at = line_rate_time(start, offset)
                self.status.bytes += len(data)
                self.status.last_data_at = at
                yield data, at
        self.status.state = "finished"


def is_gzip(path: Path) -> bool:
    with path.open("rb") as probe:
        return probe.read(2) == b"\x1f\x8b"


def open_dump(path: Path) -> io.BufferedIOBase:
    """A raw dump's bus bytes: the file itself, or its content if it is gzip-compressed."""
    if is_gzip(path):
        return gzip.open(path, "rb")  # reads every member of a multi-member file
    return path.open("rb")


def dump_length(path: Path) -> int:
    """How many bus bytes a raw dump holds: its size, or for a gzip file its content's length.

    The gzip trailer's ISIZE cannot be trusted for this: it is the length of the *last* member
    only (files concatenated with `cat a.gz b.gz`, or written in pieces, have several), and only
    modulo 4 GiB. So the content is streamed and counted (~0.3 s per 100 MB here), which is also
    what reading it costs anyway. A corrupt file counts up to where it fails (reading it reports
    that failure).
    """
    if not is_gzip(path):
        return path.stat().st_size
    length = 0
    with gzip.open(path, "rb") as stream:
        try:
            while block := stream.read(1 << 20):
                length += len(block)
        except (OSError, EOFError, zlib.error):
            pass
    return length


def line_rate_time(start: datetime, offset: int) -> datetime:
    """When the first `offset` bytes of a raw dump that began at `start` had arrived (line rate)."""
    return start + timedelta(microseconds=offset * 1_000_000 // LINE_RATE_BYTES_PER_SECOND)


def nothing_decoded(size: int, frames: int, kind: str) -> str | None:
    """Why an input of `size` bytes from which `frames` link frames were decoded is an error,
    or None when it is not. `kind`: "raw" or "capture".

    One rule for every command that reads finite input (`backfill` per file; `observe` and
    `run` on a capture or raw source): bytes without a single valid frame mean the input is not
    what it was taken for, and the user must hear it. Frames without a power report are not an
    error: at night a bus carries polls and nothing else.
    """
    if size == 0 or frames:
        return None
    hint = (
        "is this a raw dump of the bus at 38400 8N1?"
        if kind == "raw"
        else "is this a capture of the bus (taptap or recorder format)?"
    )
    return f"no TAP frames in {describe_size(size)}: {hint}"


def nothing_decoded_from(source: Source, frames: int) -> str | None:
    """`nothing_decoded` for a finite source that has been read to its end, naming it."""
    if source.live or isinstance(source, LiveSource):
        return None
    reason = nothing_decoded(
        source.status.bytes, frames, "raw" if isinstance(source, RawSource) else "capture"
    )
    return f"{source.describe()}: {reason}" if reason else None


def describe_size(size: int) -> str:
    if size >= 1_000_000:
        return f"{size / 1e6:.1f} MB"
    if size >= 1000:
        return f"{size / 1e3:.1f} kB"
    return f"{size} bytes"


def _check_readable(path: Path, what: str) -> None:
    if not path.exists():
        raise SourceError(f"{what} {path} does not exist")
    if path.is_dir():
        raise SourceError(f"{what} {path} is a directory, expected a file")
    if not os.access(path, os.R_OK):
        raise SourceError(f"{what} {path} is not readable (permissions)")


# ------------------------------------------------------------------------------------------------
# URL parsing

SOURCE_URL_HELP = (
    "expected /dev/ttyUSB0, serial:///dev/ttyUSB0, tcp://HOST[:PORT][?format=capture], capture:PATH, "
    "raw:PATH or sim:[?OPTIONS]"
)


@dataclass
class SourceOptions:
    raw_start: datetime | None = None
    policy: ReconnectPolicy = field(default_factory=ReconnectPolicy)


def _tcp_format(url: str, query: str) -> bool:
    """Whether a TCP URL's query asks for the capture format (`?format=capture`)."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        pairs = [("", query)]
    options = dict(pairs)
    stream_format = options.get("format", "raw")
    if len(pairs) != len(options) or set(options) - {"format"} or stream_format not in ("raw", "capture"):
        raise SourceError(
            f"malformed TCP URL {url!r}: the only option is format=raw (bus bytes, the default) "
            "or format=capture (a timestamped capture stream)"
        )
    return stream_format == "capture"


def open_source(url: str, options: SourceOptions | None = None) -> Source:
    """Parse a source URL. Raises SourceError with the expected forms when malformed."""
    options = options or SourceOptions()
    text = url.strip()
    if not text:
        raise SourceError(f"empty source URL: {SOURCE_URL_HELP}")
    if text.startswith("/dev/") or text.startswith("serial://"):
        device = text[len("serial://") :] if text.startswith("serial://") else text
        if not device.startswith("/"):
            raise SourceError(f"malformed serial URL {url!r}: {SOURCE_URL_HELP}")
        return SerialSource(text, device, options.policy)
    if text.startswith("tcp://"):
        parts = urlsplit(text)
        try:
            port = parts.port or DEFAULT_TCP_PORT
        except ValueError:
            raise SourceError(f"malformed TCP URL {url!r}: the port must be a number 1-65535") from None
        if not parts.hostname or parts.path not in ("", "/") or parts.fragment:
            raise SourceError(f"malformed TCP URL {url!r}: {SOURCE_URL_HELP}")
        return TcpSource(text, parts.hostname, port, options.policy, capture=_tcp_format(url, parts.query))
    if text.startswith("capture:"):
        path = text[len("capture:") :]
        if not path:
            raise SourceError(f"malformed capture URL {url!r}: expected capture:PATH")
        return CaptureSource(text, Path(path).expanduser())
    if text.startswith("raw:"):
        path = text[len("raw:") :]
        if not path:
            raise SourceError(f"malformed raw URL {url!r}: expected raw:PATH")
        return RawSource(text, Path(path).expanduser(), options.raw_start)
    if text.startswith("sim:"):
        from recorder.sim.source import SimulatorSource

        query = text[len("sim:") :].lstrip("?")
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
        except ValueError:
            raise SourceError(f"malformed simulator URL {url!r}: expected sim:?key=value&...") from None
        return SimulatorSource(text, dict(pairs))
    raise SourceError(f"unknown source {url!r}: {SOURCE_URL_HELP}")
