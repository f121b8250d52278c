from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.protocol.gateway.link import (
    MAX_BODY_BYTES,
    LinkDecoder,
    encode_frame,
    escape,
    frame_from_body,
    unescape,
)
from tests.helpers import T0, chunkings, hexbytes
from tests.protocol import reference_frames as ref


def link_decode(data: bytes) -> tuple[list[bytes], dict[str, int]]:
    """Bodies and counters, asserting they are the same for every chunking of `data`."""
    results = []
    for name, chunks in chunkings(data):
        decoder = LinkDecoder()
        bodies = [body for chunk in chunks for body in decoder.feed(chunk)]
        results.append((name, bodies, decoder.counters.as_dict()))
    for name, bodies, counters in results[1:]:
        assert bodies == results[0][1], f"bodies differ when fed {name}"
        assert counters == results[0][2], f"counters differ when fed {name}"
    return results[0][1], results[0][2]


def test_reference_frame_is_delimited_and_checked() -> None:
    bodies, counters = link_decode(ref.LINK_EXAMPLE)
    assert bodies == [hexbytes("92 01 01 49 00 FF EC 66 40")]
    frame = frame_from_body(bodies[0], T0)
    assert (frame.gateway_id, frame.from_gateway, frame.frame_type) == (0x1201, True, 0x0149)
    assert frame.payload == hexbytes("00 FF EC 66 40")
    assert counters["frames"] == 1 and counters["noise_bytes"] == 0


def test_escaped_checksum_byte_is_restored() -> None:
    # The CRC A3 85 travels as 7E 05 85.
    bodies, _ = link_decode(ref.LINK_ESCAPE_EXAMPLE)
    assert bodies == [hexbytes("92 01 01 49 00 FF 7C DB C2")]


def test_escaped_payload_in_enumeration_start() -> None:
    bodies, _ = link_decode(ref.ENUMERATION_START_REQUEST)
    assert bodies == [hexbytes("00 00 00 14 37 24 92 66 12 35")]


def test_encoder_reproduces_reference_bytes() -> None:
    assert (
        encode_frame(0x1201, 0x0149, hexbytes("00 FF 7C DB C2"), from_gateway=True) == ref.LINK_ESCAPE_EXAMPLE
    )
    assert (
        encode_frame(0, 0x0014, hexbytes("37 24 92 66 12 35"), from_gateway=False)
        == ref.ENUMERATION_START_REQUEST
    )


def test_noise_between_frames_is_counted_and_survived() -> None:
    garbage = hexbytes("13 37 C0 FF EE 7E 42 99")
    bodies, counters = link_decode(garbage + ref.LINK_EXAMPLE + garbage + ref.RECEIVE_REQUEST_1883 + garbage)
    assert len(bodies) == 2
    # Every garbage byte that is not idle filler (00/FF) is noise; the 7E 42 included.
    assert counters["noise_bytes"] == 3 * (len(garbage) - 1)


def test_bad_checksum_is_counted_and_the_next_frame_still_decodes() -> None:
    damaged = bytearray(ref.LINK_EXAMPLE)
    damaged[8] ^= 0x01  # flip a bit inside the payload
    bodies, counters = link_decode(bytes(damaged) + ref.RECEIVE_REQUEST_1883)
    assert len(bodies) == 1
    assert counters["checksum_errors"] == 1


def test_runt_is_counted() -> None:
    bodies, counters = link_decode(hexbytes("FF 7E 07 92 01 01 7E 08") + ref.LINK_EXAMPLE)
    assert len(bodies) == 1 and counters["runts"] == 1


def test_truncated_frame_resynchronises_on_the_next_start() -> None:
    cut = ref.LINK_EXAMPLE[:9]  # start marker and a few body bytes, then silence
    bodies, counters = link_decode(cut + ref.RECEIVE_REQUEST_1883)
    assert len(bodies) == 1 and counters["truncated_frames"] == 1


def test_giant_is_counted_and_decoding_resumes() -> None:
    giant = hexbytes("FF 7E 07") + bytes([0x11]) * (MAX_BODY_BYTES + 50) + hexbytes("7E 08")
    bodies, counters = link_decode(giant + ref.LINK_EXAMPLE)
    assert len(bodies) == 1 and counters["giants"] == 1


def test_overlong_start_followed_by_a_new_frame_counts_as_truncated() -> None:
    overlong = hexbytes("FF 7E 07") + bytes([0x11]) * (MAX_BODY_BYTES + 50)
    bodies, counters = link_decode(overlong + ref.LINK_EXAMPLE)
    assert len(bodies) == 1
    assert counters["truncated_frames"] == 1 and counters["giants"] == 0


def test_invalid_escape_code_is_counted() -> None:
    bodies, counters = link_decode(hexbytes("FF 7E 07 92 01 7E 09 49 00 FF EC 66 40 D6 21 7E 08"))
    assert bodies == [] and counters["invalid_escapes"] == 1


def test_end_marker_without_start_is_noise() -> None:
    bodies, counters = link_decode(hexbytes("12 34 7E 08") + ref.LINK_EXAMPLE)
    assert len(bodies) == 1 and counters["noise_bytes"] == 4


@pytest.mark.parametrize("byte", [0x7E, 0x23, 0x24, 0x25, 0xA3, 0xA4, 0xA5])
def test_every_escaped_byte_round_trips(byte: int) -> None:
    body = bytes([0x10, byte, byte, 0x7E, 0x00, byte])
    assert unescape(escape(body)) == body
    assert all(b not in escape(body) for b in (0x23, 0x24, 0x25, 0xA3, 0xA4, 0xA5))


@given(st.binary(max_size=200))
def test_escape_round_trip(body: bytes) -> None:
    escaped = escape(body)
    assert b"\x7e\x07" not in escaped and b"\x7e\x08" not in escaped
    assert unescape(escaped) == body


@given(
    st.lists(
        st.tuples(st.integers(0, 0x7FFF), st.integers(0, 0xFFFF), st.binary(max_size=120), st.booleans()),
        max_size=6,
    )
)
@settings(max_examples=60)
def test_encoded_frames_decode_to_their_bodies(frames: list[tuple[int, int, bytes, bool]]) -> None:
    data = b"".join(encode_frame(a, t, p, from_gateway=g) for a, t, p, g in frames)
    bodies, counters = link_decode(data)
    decoded = [frame_from_body(b, T0) for b in bodies]
    assert [(f.gateway_id, f.from_gateway, f.frame_type, f.payload) for f in decoded] == [
        (a, g, t, p) for a, t, p, g in frames
    ]
    assert counters["noise_bytes"] == 0 and counters["frames"] == len(frames)


# Every piece with a start marker ends up in exactly one of these (frames: intact).
_CLASSIFIED = ("frames", "giants", "runts", "invalid_escapes", "checksum_errors", "dropped_frames")


def _droppable(body: bytes, drop_type: int) -> bool:
    """Of that type, with an address that needs no escaping (else the type bytes move)."""
    return (body[2] << 8) | body[3] == drop_type and escape(body[:2]) == body[:2]


def _dropping_matches_canonical(data: bytes, drop_type: int) -> int:
    """Feeds `data` whole and in other chunkings to a decoder dropping `drop_type` and to the
    canonical one; returns how many frames were dropped."""
    canonical = LinkDecoder()
    expected = [body for body in canonical.feed(data) if not _droppable(body, drop_type)]
    counts = canonical.counters.as_dict()
    dropped = set()
    for name, chunks in chunkings(data, random_splits=3):
        decoder = LinkDecoder(drop_type=drop_type)
        bodies = [body for chunk in chunks for body in decoder.feed(chunk)]
        assert bodies == expected, f"bodies differ when fed {name}"
        mine = decoder.counters.as_dict()
        unchanged = set(counts) - set(_CLASSIFIED)
        assert {k: mine[k] for k in unchanged} == {k: counts[k] for k in unchanged}, name
        # A dropped frame is counted there instead of where the canonical decoder put it.
        assert sum(mine[k] for k in _CLASSIFIED) == sum(counts[k] for k in _CLASSIFIED), name
        dropped.add(mine["dropped_frames"])
    assert len(dropped) == 1
    return dropped.pop()


def test_dropping_receive_requests_leaves_every_other_frame_as_it_was() -> None:
    """What the backfill's read-ahead does (`drop_type`), on noisy simulated traffic."""
    from datetime import timedelta

    from recorder.protocol.gateway.transport import RECEIVE_REQUEST
    from recorder.sim.bus import BusSimulation
    from recorder.sim.config import SimulationConfig

    config = SimulationConfig(duration=timedelta(minutes=20), nodes=10, seed=61, noise=0.05)
    data = b"".join(chunk for chunk, _ in BusSimulation(config).run())
    requests = sum(1 for body in LinkDecoder().feed(data) if _droppable(body, RECEIVE_REQUEST))
    dropped = _dropping_matches_canonical(data, RECEIVE_REQUEST)
    assert requests > 200 and dropped >= requests  # corrupt requests are dropped too


@given(
    st.lists(
        st.one_of(
            st.tuples(
                # Escaped addresses shift the type bytes: 0x24 is sent as 7E 01, so with 0x2401 or
                # 0x0024 a type starting 48 puts 01 48 where an unescaped type would be.
                st.one_of(st.integers(0, 0x7FFF), st.sampled_from([0x0024, 0x1224, 0x2401, 0x7E7E])),
                st.sampled_from([0x0148, 0x0149, 0x4801, 0x4848, 0x7E01]),
                st.binary(max_size=12),
            ),
            st.binary(max_size=8),  # garbage between frames
        ),
        max_size=8,
    )
)
@settings(max_examples=200)
def test_dropping_a_type_never_changes_the_other_frames(parts: list[tuple[int, int, bytes] | bytes]) -> None:
    data = b"".join(
        part if isinstance(part, bytes) else encode_frame(*part, from_gateway=False) for part in parts
    )
    _dropping_matches_canonical(data, 0x0148)
