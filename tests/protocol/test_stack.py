from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.protocol.events import PowerReportReceived
from recorder.protocol.stack import Stack
from tests.helpers import T0, chunkings, decode, only
from tests.protocol import reference_frames as ref

VALID_TRAFFIC = [
    ref.RECEIVE_REQUEST_1883,
    ref.LINK_EXAMPLE,
    ref.COMMAND_REQUEST,
    ref.COMMAND_RESPONSE,
    *ref.ENUMERATION_SEQUENCE[:10],
]


@given(st.binary(max_size=3000))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_bytes_never_raise_and_are_accounted_for(data: bytes) -> None:
    stack = Stack()
    stack.feed(data, T0)
    counters = stack.counters.as_dict()
    assert counters["bytes"] == len(data)
    assert counters["noise_bytes"] <= len(data)
    # Every frame costs at least its markers (4 bytes) and a 6-byte body on the wire.
    rejected = sum(counters[name] for name in ("runts", "giants", "invalid_escapes", "checksum_errors"))
    assert 10 * counters["frames"] + 4 * rejected <= len(data) + 4
    assert stack.link.pending_bytes <= len(data)


@given(st.lists(st.sampled_from(VALID_TRAFFIC) | st.binary(max_size=40), max_size=30), st.integers(0, 2**32))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_output_is_independent_of_chunking(pieces: list[bytes], seed: int) -> None:
    data = b"".join(pieces)
    expected_events, expected_counters = None, None
    for _name, chunks in chunkings(data, seed=seed, random_splits=3):
        stack = Stack(verbose=True)
        events = [event for chunk in chunks for event in stack.feed(chunk, T0)]
        if expected_events is None:
            expected_events, expected_counters = events, stack.counters.as_dict()
        else:
            assert events == expected_events
            assert stack.counters.as_dict() == expected_counters


def test_valid_frames_survive_random_garbage_between_them() -> None:
    rng = random.Random(7)
    frames = [ref.LINK_EXAMPLE, ref.RECEIVE_REQUEST_1883, ref.COMMAND_REQUEST, ref.COMMAND_RESPONSE] * 20
    garbage = [
        bytes(rng.choice([0x00, 0xFF, 0x13, 0x7E, 0x42]) for _ in range(rng.randint(0, 12))) for _ in frames
    ]
    data = b"".join(g + f for g, f in zip(garbage, frames, strict=True))
    _, counters = decode(data)
    # Garbage ending in 7E can merge with the next frame's start marker and spoil it; any frame
    # lost that way is counted, never silently dropped.
    lost = len(frames) - counters["frames"]
    assert (
        lost
        == counters["truncated_frames"]
        + counters["checksum_errors"]
        + counters["invalid_escapes"]
        + counters["runts"]
    )
    assert counters["frames"] >= len(frames) - sum(1 for g in garbage if g.endswith(b"\x7e"))


def test_events_carry_the_receive_time_of_the_chunk_that_completed_them() -> None:
    from datetime import timedelta

    from recorder.protocol import encode
    from recorder.protocol.pv import application as app

    data = encode.receive_request(0x1201, 1) + encode.receive_response(
        0x1201, 0x00FE, 1, 0x9000, [encode.packet(app.POWER_REPORT, 2, ref.POWER_REPORT_13)]
    )
    stack = Stack()
    later = T0 + timedelta(seconds=1)
    assert stack.feed(data[:-5], T0) == []
    events = stack.feed(data[-5:], later)
    assert only(events, PowerReportReceived)[0].received_at == later


def test_frames_delimited_elsewhere_give_what_feeding_the_chunks_gives() -> None:
    """The backfill's read-ahead delimits records in batches (`delimit_chunks`) and the stack
    decodes the bodies (`feed_frames`): the events of feeding record by record, times included."""
    from datetime import timedelta

    from recorder.protocol.gateway.link import LinkDecoder
    from recorder.protocol.stack import delimit_chunks

    data = b"".join([*VALID_TRAFFIC, b"\x13\x7e", *ref.ENUMERATION_SEQUENCE])
    chunks = [data[start : start + 7] for start in range(0, len(data), 7)]
    times = [T0 + timedelta(milliseconds=10 * n) for n in range(len(chunks))]
    one_by_one = Stack()
    expected = [
        event for chunk, at in zip(chunks, times, strict=True) for event in one_by_one.feed(chunk, at)
    ]
    batched = Stack()
    events = batched.feed_frames(*delimit_chunks(LinkDecoder(), chunks, times))
    assert len(expected) > 10 and events == expected
    assert batched.counters.transport == one_by_one.counters.transport
