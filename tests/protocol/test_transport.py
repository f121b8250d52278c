from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.protocol import encode
from recorder.protocol.events import (
    EnumerationEnded,
    EnumerationStarted,
    FrameSeen,
    GatewayIdAssigned,
    GatewayIdentityObserved,
    GatewayVersionObserved,
    PowerReportReceived,
    StringRequestSent,
    UnknownPacketReceived,
)
from recorder.protocol.gateway.transport import RECEIVE_RESPONSE, widen_packet_number
from recorder.protocol.pv import application as app
from recorder.protocol.pv.network import encode_packet
from tests.helpers import decode, hexbytes, only
from tests.protocol import reference_frames as ref


def test_receive_request_tracks_packet_number() -> None:
    events, counters = decode(ref.RECEIVE_REQUEST_1883 + ref.RECEIVE_REQUEST_1884, verbose=True)
    assert counters["receive_requests"] == 2
    assert [e.summary for e in only(events, FrameSeen)] == ["packet number 0x1883", "packet number 0x1884"]


@pytest.mark.parametrize(
    ("payload", "request_number", "packet_number", "slot_counter"),
    [
        (ref.STATUS_E0, 0x40FB, 0x40FB, 0x211B),  # all optional fields present
        (ref.STATUS_FE, 0x40FB, 0x40FF, 0x2122),  # rx buffers only; low byte widened
        (ref.STATUS_EE, 0x40FB, 0x4101, 0x2127),  # packet number high byte present
        (ref.STATUS_FF, 0x4101, 0x4103, 0x2131),  # smallest form
    ],
)
def test_reference_status_word_variants(
    payload: bytes, request_number: int, packet_number: int, slot_counter: int
) -> None:
    data = encode.receive_request(0x1201, request_number) + encode.gateway_frame(
        0x1201, RECEIVE_RESPONSE, payload
    )
    events, counters = decode(data, verbose=True)
    assert counters["receive_responses"] == 1 and counters["invalid_receive_responses"] == 0
    assert (
        f"packet number 0x{packet_number:04X} slot counter 0x{slot_counter:04X}"
        in only(events, FrameSeen)[-1].summary
    )


@pytest.mark.parametrize(
    "status", [0x01FF, 0x41FF, 0x81FF, 0xC1FF, 0x81E0, 0xC1E0, 0x81FE, 0x00FF & 0xFF7F, 0x00BF]
)
def test_firmware_4x_status_words_still_decode_packets(status: int) -> None:
    # NOTES 2: high byte no longer zero, bits 5-7 vary. Only bits 0-4 decide the layout.
    report = app.encode_power_report(app.decode_power_report(ref.POWER_REPORT_15))  # type: ignore[arg-type]
    packet = encode_packet(app.POWER_REPORT, 0x0074, 0x0114, 0x63, report)
    data = encode.receive_request(0x1201, 0x0100) + encode.receive_response(
        0x1201, status, 0x0100, 0xE000, [packet]
    )
    events, counters = decode(data)
    assert counters["invalid_receive_responses"] == 0
    reports = only(events, PowerReportReceived)
    assert len(reports) == 1 and reports[0].node_id == 0x74 and reports[0].report.voltage_in == 45.25


def test_widening_of_low_byte_packet_numbers() -> None:
    assert widen_packet_number(0x01, 0x40FF) == 0x4101  # wrapped forward
    assert widen_packet_number(0xFE, 0x4101) == 0x40FE  # slightly behind
    assert widen_packet_number(0x05, 0xFFFE) == 0x0005  # across 0xFFFF


def test_several_packets_in_one_response_and_a_truncated_tail() -> None:
    first = encode_packet(app.POWER_REPORT, 2, 0x10, 7, ref.POWER_REPORT_13)
    second = encode_packet(app.POWER_REPORT, 3, 0x11, 7, ref.POWER_REPORT_15)
    truncated = encode_packet(app.POWER_REPORT, 4, 0x12, 8, ref.POWER_REPORT_13)[:-3]
    data = encode.receive_request(0x1201, 5) + encode.receive_response(
        0x1201, 0x00EE, 6, 0x9000, [first, second, truncated]
    )
    events, counters = decode(data)
    assert [e.node_id for e in only(events, PowerReportReceived)] == [2, 3]
    assert counters["packets"] == 2 and counters["truncated_packets"] == 1


def test_retransmitted_response_packets_are_dropped_once() -> None:
    packet = encode_packet(app.POWER_REPORT, 2, 0x10, 7, ref.POWER_REPORT_13)
    newer = encode_packet(app.POWER_REPORT, 3, 0x11, 8, ref.POWER_REPORT_15)
    data = (
        encode.receive_request(0x1201, 0x10)
        + encode.receive_response(0x1201, 0x00EE, 0x10, 0x9000, [packet])
        # The controller missed that answer and polls again with the same number.
        + encode.receive_request(0x1201, 0x10)
        + encode.receive_response(0x1201, 0x00EE, 0x11, 0x9010, [packet, newer])
    )
    events, counters = decode(data)
    assert [e.node_id for e in only(events, PowerReportReceived)] == [2, 3]
    assert counters["retransmitted_packets"] == 1


def test_reference_command_pair_is_matched() -> None:
    events, counters = decode(ref.COMMAND_REQUEST + ref.COMMAND_RESPONSE)
    assert only(events, StringRequestSent)[0].text == "^00Info\r"
    assert only(events, StringRequestSent)[0].node_id == 9
    assert counters["command_requests"] == 1 and counters["command_responses"] == 1


def test_command_retransmission_is_reported_once() -> None:
    request = encode.command_request(0x1201, app.NODE_TABLE_REQUEST, 0x21, b"\x00\x00")
    response = encode.command_response(
        0x1201, app.NODE_TABLE_RESPONSE, 0x21, app.encode_node_table_response(0, [])
    )
    events, counters = decode(request + response + request + response)
    assert len(only(events, app.NodeTablePage)) == 1
    assert counters["retransmitted_command_requests"] == 1
    assert counters["retransmitted_command_responses"] == 1


def test_command_pairing_is_per_gateway() -> None:
    request_a = encode.command_request(0x1201, app.NODE_TABLE_REQUEST, 0x30, b"\x00\x00")
    request_b = encode.command_request(0x1202, app.NODE_TABLE_REQUEST, 0x30, b"\x00\x10")
    response_b = encode.command_response(
        0x1202, app.NODE_TABLE_RESPONSE, 0x30, app.encode_node_table_response(0x10, [])
    )
    response_a = encode.command_response(
        0x1201, app.NODE_TABLE_RESPONSE, 0x30, app.encode_node_table_response(0, [])
    )
    events, _ = decode(request_a + request_b + response_b + response_a)
    pages = only(events, app.NodeTablePage)
    assert [(p.gateway_id, p.requested_index) for p in pages] == [(0x1202, 0x10), (0x1201, 0)]


def test_full_reference_enumeration_sequence() -> None:
    events, counters = decode(b"".join(ref.ENUMERATION_SEQUENCE))
    assert counters["frames"] == len(ref.ENUMERATION_SEQUENCE)
    assert counters["checksum_errors"] == 0 and counters["unknown_frame_types"] == 0
    assert [e.enumeration_gateway_id for e in only(events, EnumerationStarted)] == [0x1235] * 5
    identities = only(events, GatewayIdentityObserved)
    assert [(e.gateway_id, e.during_enumeration) for e in identities] == [
        (0x1235, True),
        (0x1201, False),
        (0x1202, False),
        (0x1201, False),
    ]
    assert all(e.long_address == ref.GATEWAY_ADDRESS and e.barcode == "3-2BE16Y" for e in identities)
    assigned = only(events, GatewayIdAssigned)
    assert [(e.gateway_id, e.new_gateway_id) for e in assigned] == [(0x1235, 0x1201), (0x1201, 0x1202)]
    assert only(events, GatewayVersionObserved)[0].version == ref.GATEWAY_VERSION
    assert len(only(events, EnumerationEnded)) == 1
    assert counters["pings"] == 4


def test_unknown_frame_types_from_the_wild_are_counted() -> None:
    # NOTES 11: 0x0E03 with eleven 00 then 01 03, and the old star systems' 0x0042/0x0043.
    data = (
        encode.gateway_frame(0x1201, 0x0E03, bytes(11) + b"\x01\x03")
        + encode.controller_frame(0x1201, 0x0042, b"\x01")
        + encode.gateway_frame(0x1201, 0x0043, b"")
        + ref.RECEIVE_REQUEST_1883
    )
    events, counters = decode(data, verbose=True)
    assert counters["unknown_frame_types"] == 3 and counters["receive_requests"] == 1
    assert [e.name for e in only(events, FrameSeen)][:3] == [
        "unknown 0x0E03",
        "unknown 0x0042",
        "unknown 0x0043",
    ]


def test_unknown_pv_packet_0x41_is_kept_raw() -> None:
    request = encode.command_request(0x1201, 0x41, 0x44, ref.UNKNOWN_41)
    response = encode.command_response(0x1201, 0x41, 0x44)
    events, counters = decode(request + response)
    unknown = only(events, UnknownPacketReceived)
    assert unknown[0].packet_type == 0x41 and unknown[0].data == ref.UNKNOWN_41
    assert counters["unknown_packet_types"] == 1


@given(
    status_high=st.integers(0, 0xFF),
    status_low=st.integers(0, 0xFF),
    packet_number=st.integers(0, 0xFFFF),
    slot=st.integers(0, 0xFFFF),
)
@settings(max_examples=200)
def test_receive_response_round_trip(
    status_high: int, status_low: int, packet_number: int, slot: int
) -> None:
    status = (status_high << 8) | status_low
    packet = encode_packet(app.POWER_REPORT, 7, 1, 1, ref.POWER_REPORT_13)
    data = encode.receive_request(0x1201, packet_number) + encode.receive_response(
        0x1201, status, packet_number, slot, [packet]
    )
    events, _counters = decode(data, verbose=True)
    assert (
        f"packet number 0x{packet_number:04X} slot counter 0x{slot:04X}" in only(events, FrameSeen)[1].summary
    )
    assert len(only(events, PowerReportReceived)) == 1
    assert only(events, PowerReportReceived)[0].gateway_slot_counter == slot


def test_frames_in_the_wrong_direction_are_rejected() -> None:
    # A receive response must come from a gateway: with the direction bit clear it is invalid.
    data = encode.controller_frame(0x1201, RECEIVE_RESPONSE, hexbytes("00 FF 03 21 31"))
    _, counters = decode(data)
    assert counters["invalid_receive_responses"] == 1
