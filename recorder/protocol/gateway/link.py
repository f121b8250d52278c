"""Gateway link layer: RS-485 bytes to checked frame bodies, and back.

Theory of operation
-------------------
Consumes: raw bus bytes in chunks of any size. Emits: frame *bodies* (address 2 B, type 2 B,
payload; checksum already verified and removed), in order. Reference: "Gateway link layer".

On the wire a frame is `7E 07 <escaped body + CRC> 7E 08`. The controller precedes its frames
with `00 FF FF`, a gateway with `FF`; both are just idle filler to us. Inside a frame `7E` is an
escape introducer and is always followed by one code byte:

    7E 00 -> 7E   7E 01 -> 24   7E 02 -> 23   7E 03 -> 25
    7E 04 -> A4   7E 05 -> A3   7E 06 -> A5

so `7E 07`/`7E 08` can never occur inside a well-formed body. That lets us find frames with
`bytes.find` (C speed) instead of a per-byte state machine, which is what makes the decoder fast
enough to backfill a year of traffic in minutes.

Resynchronisation: decoding restarts at every `7E 07`. A start followed by another start before
any end means the first frame was cut short (`truncated_frames`). A start with no end within
`MAX_BODY_BYTES` escaped bytes is a `giants` frame. A body shorter than address + type + CRC is a
`runts` frame. Other failures: `invalid_escapes`, `checksum_errors`. Bytes between frames that
are not idle filler (`00`/`FF`) are counted as `noise_bytes`. Nothing here ever raises on input.

A replay may ask for one frame type to be dropped unread (`drop_type`): a frame whose type
bytes match, where the address before them needs no escaping, is discarded before unescaping and
checksumming and counted only in `dropped_frames`. The backfill drops receive requests this way
(half of all frames, see `recorder.backfill.readahead`).

The body address's top bit tells direction: set = from gateway ("gateway ID | 0x8000"), clear =
to gateway. That is decoded one layer up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from recorder.counters import Counters
from recorder.protocol.crc import append_crc, frame_is_intact

START = b"\x7e\x07"
END = b"\x7e\x08"
CONTROLLER_PREAMBLE = b"\x00\xff\xff"
GATEWAY_PREAMBLE = b"\xff"
# Largest escaped body we accept. Real frames are a few hundred bytes at most (a receive
# response with a handful of PV packets); anything far longer is line noise that lost its end.
MAX_BODY_BYTES = 2048
MIN_BODY_BYTES = 6  # address 2 + type 2 + CRC 2

_ESCAPES = {
    0x7E: b"\x7e\x00",
    0x24: b"\x7e\x01",
    0x23: b"\x7e\x02",
    0x25: b"\x7e\x03",
    0xA4: b"\x7e\x04",
    0xA3: b"\x7e\x05",
    0xA5: b"\x7e\x06",
}


def escape(body: bytes) -> bytes:
    """Apply the link escaping. `7E` first, so the escapes we insert are not escaped again."""
    result = body.replace(b"\x7e", b"\x7e\x00")
    for raw, escaped in _ESCAPES.items():
        if raw != 0x7E:
            result = result.replace(bytes((raw,)), escaped)
    return result


# Code byte after 7E -> the byte it stands for; None marks codes that are not escapes.
_UNESCAPED: list[bytes | None] = [None] * 256
for _raw, _sequence in _ESCAPES.items():
    _UNESCAPED[_sequence[1]] = bytes((_raw,))


def unescape(escaped: bytes) -> bytes | None:
    """Undo `escape`; None if an escape introducer is followed by an unknown code."""
    if b"\x7e" not in escaped:
        return escaped
    pieces = escaped.split(b"\x7e")
    result = [pieces[0]]
    for piece in pieces[1:]:
        # Each piece starts with the code byte of the escape that preceded it.
        raw = _UNESCAPED[piece[0]] if piece else None
        if raw is None:
            return None
        result.append(raw)
        result.append(piece[1:])
    return b"".join(result)


def encode_frame(address: int, frame_type: int, payload: bytes, *, from_gateway: bool) -> bytes:
    """Bus bytes for one frame, including preamble, escaping, checksum and delimiters.

    `address` is the gateway ID (15 bits); the direction bit is set here from `from_gateway`.
    """
    wire_address = (address & 0x7FFF) | (0x8000 if from_gateway else 0)
    body = wire_address.to_bytes(2, "big") + frame_type.to_bytes(2, "big") + payload
    preamble = GATEWAY_PREAMBLE if from_gateway else CONTROLLER_PREAMBLE
    return preamble + START + escape(append_crc(body)) + END


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded link frame, for diagnostics (`peek frames`). The hot path uses bare bodies."""

    gateway_id: int
    from_gateway: bool
    frame_type: int
    payload: bytes
    received_at: datetime


def frame_from_body(body: bytes, received_at: datetime) -> Frame:
    address = (body[0] << 8) | body[1]
    return Frame(
        gateway_id=address & 0x7FFF,
        from_gateway=bool(address & 0x8000),
        frame_type=(body[2] << 8) | body[3],
        payload=body[4:],
        received_at=received_at,
    )


_IDLE_GAPS = frozenset((b"", GATEWAY_PREAMBLE, CONTROLLER_PREAMBLE))


def _noise_in(gap: bytes) -> int:
    """Bytes in a gap between frames that are not idle filler."""
    if gap in _IDLE_GAPS:
        return 0
    return len(gap) - gap.count(0x00) - gap.count(0xFF)


@dataclass(slots=True)
class LinkCounters(Counters):
    """What the link layer saw (see the module docstring for each kind of damage)."""

    bytes: int = 0
    frames: int = 0
    noise_bytes: int = 0
    runts: int = 0
    giants: int = 0
    truncated_frames: int = 0
    invalid_escapes: int = 0
    checksum_errors: int = 0
    dropped_frames: int = 0  # of the `drop_type` asked for, discarded unread


class LinkDecoder:
    """Streaming frame delimiter, unescaper and checksum check (see module docstring).

    Implementation: the buffer is split on the end marker; every piece but the last should be
    `gap + 7E 07 + escaped body`. The last piece has no end yet and is kept for the next call.
    Noise is every non-idle byte outside the frames we decoded or rejected (the markers of a
    truncated frame included), so all counters are the same however the input is chunked.
    """

    def __init__(self, *, drop_type: int | None = None) -> None:
        # Frames of this type are discarded unread (see module docstring); its two bytes.
        self._drop = None if drop_type is None else drop_type.to_bytes(2, "big")
        self._buffer = b""
        # Inside a start marker that has gone on too long to be a frame: the noise it would be
        # if it turns out to be truncated by a later start (None when not in that state).
        self._overlong_noise: int | None = None
        self.counters = LinkCounters()

    def feed(self, data: bytes) -> list[bytes]:
        """Consume bytes; return the bodies (address + type + payload) of intact frames."""
        return self._decode(data, None)

    def feed_located(self, data: bytes) -> tuple[list[bytes], list[int]]:
        """Like `feed`, also giving for each body the index in `data` of its end marker's last
        byte (so a caller that concatenated timestamped records can tell which completed it)."""
        positions: list[int] = []
        return self._decode(data, positions), positions

    def _decode(self, data: bytes, positions: list[int] | None) -> list[bytes]:
        self.counters.bytes += len(data)
        buffer = self._buffer + data if self._buffer else bytes(data)
        if self._overlong_noise is not None:
            buffer = self._skip_overlong(buffer)
            if self._overlong_noise is not None:
                self._buffer = buffer
                return []
        pieces = buffer.split(END)
        remainder = pieces.pop()
        bodies: list[bytes] = []
        append = bodies.append
        intact = frame_is_intact
        noise = 0
        drop = self._drop
        dropped = 0
        # The data's bytes are the tail of the buffer: buffer index - shift = data index.
        shift = len(buffer) - len(data)
        cursor = 0  # buffer index where the current piece starts
        for piece in pieces:
            piece_start = cursor
            cursor += len(piece) + 2
            start = piece.rfind(START)
            if start < 0:
                # An end marker with no start: noise, or a frame whose start was destroyed.
                noise += _noise_in(piece) + 2
                continue
            if start:
                gap = piece[:start]
                if gap not in _IDLE_GAPS:
                    self.counters.truncated_frames += gap.count(START)  # starts that never saw an end
                    noise += _noise_in(gap)
            if (
                drop is not None
                and piece.startswith(drop, start + 4)
                and piece[start + 2] != 0x7E  # an escaped address would move the type bytes
                and piece[start + 3] != 0x7E
            ):
                dropped += 1
                continue
            escaped = piece[start + 2 :]
            if len(escaped) > MAX_BODY_BYTES:
                self.counters.giants += 1
                continue
            if 0x7E in escaped:
                body = unescape(escaped)
                if body is None:
                    self.counters.invalid_escapes += 1
                    continue
            else:
                body = escaped
            if len(body) < MIN_BODY_BYTES:
                self.counters.runts += 1
                continue
            if not intact(body):
                self.counters.checksum_errors += 1
                continue
            append(body[:-2])
            if positions is not None:
                positions.append(piece_start + len(piece) + 1 - shift)
        self.counters.noise_bytes += noise
        self.counters.frames += len(bodies)
        self.counters.dropped_frames += dropped
        self._buffer = self._hold(remainder)
        return bodies

    def _hold(self, remainder: bytes) -> bytes:
        """What to keep of the bytes after the last end marker (counting what we let go)."""
        start = remainder.rfind(START)
        if start < 0:
            # No frame in progress. Keep a trailing 7E: it may be the first half of a marker.
            keep = 1 if remainder.endswith(b"\x7e") else 0
            self.counters.noise_bytes += _noise_in(remainder[: len(remainder) - keep])
            return remainder[len(remainder) - keep :]
        if start:
            gap = remainder[:start]
            if gap not in _IDLE_GAPS:
                self.counters.truncated_frames += gap.count(START)
                self.counters.noise_bytes += _noise_in(gap)
        if len(remainder) - start > MAX_BODY_BYTES + 3:
            # Longer than any frame with no end yet: a giant (if an end comes next) or a
            # truncated frame (if a start does). Stop buffering it; remember its noise.
            self._overlong_noise = 0
            return self._skip_overlong(remainder[start:], own_start=True)
        return remainder[start:]

    def _skip_overlong(self, buffer: bytes, *, own_start: bool = False) -> bytes:
        """Discard an overlong frame's bytes until the next marker decides what it was.

        `own_start`: `buffer` begins with the overlong frame's own start marker.
        """
        assert self._overlong_noise is not None
        next_start = buffer.find(START, 2 if own_start else 0)
        next_end = buffer.find(END)
        if next_start >= 0 and (next_end < 0 or next_start < next_end):
            self.counters.truncated_frames += 1
            self.counters.noise_bytes += self._overlong_noise + _noise_in(buffer[:next_start])
            self._overlong_noise = None
            return buffer[next_start:]
        if next_end >= 0:
            self.counters.giants += 1
            self._overlong_noise = None
            return buffer[next_end + 2 :]
        keep = 1 if buffer.endswith(b"\x7e") else 0
        self._overlong_noise += _noise_in(buffer[: len(buffer) - keep])
        return buffer[len(buffer) - keep :]

    @property
    def pending_bytes(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buffer)
