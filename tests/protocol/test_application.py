from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.protocol import encode
from recorder.protocol.events import (
    BroadcastSent,
    GatewayRadioConfiguration,
    NetworkStatus,
    NodeTableEntry,
    NodeTablePage,
    PowerReport,
    PowerReportReceived,
    PvConfigurationReceived,
    PvConfigurationRequested,
    StringRequestSent,
    StringResponseReceived,
    TopologyReport,
    TopologyReportReceived,
)
from recorder.protocol.pv import application as app
from tests.helpers import decode, hexbytes, only
from tests.protocol import reference_frames as ref


def received(packet_type: int, data: bytes, node_id: int = 0x0A) -> bytes:
    """Bus bytes delivering one PV packet from a node through gateway 0x1201."""
    return encode.receive_request(0x1201, 0x1883) + encode.receive_response(
        0x1201,
        0x00FE,
        0x1883,
        0x9000,
        [encode.packet(packet_type, node_id, data, short_address=0x0114, dsn=0x63)],
    )


def exchanged(
    request_type: int, request_data: bytes, response_type: int, response_data: bytes, sequence: int = 0x42
) -> bytes:
    return encode.command_request(0x1201, request_type, sequence, request_data) + encode.command_response(
        0x1201, response_type, sequence, response_data
    )


def test_reference_power_report() -> None:
    report = app.decode_power_report(ref.POWER_REPORT_13)
    assert report is not None
    assert report.voltage_in == 34.7
    assert report.voltage_out == 34.4
    assert report.duty_cycle == 1.0
    assert report.current_in == 0.25  # NOTES 17: 50 × 5 mA (the reference text slips to 0.025)
    assert report.temperature == 34.4
    assert report.unknown == hexbytes("81 00 6E")
    assert report.slot_counter == 0x8FA0
    assert report.rssi == 0x7E
    assert report.tail == b""


def test_fifteen_byte_report_from_firmware_4() -> None:
    # NOTES 3: the real 15-byte example and its values.
    report = app.decode_power_report(ref.POWER_REPORT_15)
    assert report is not None
    assert (report.voltage_in, report.voltage_out, report.duty_cycle_raw) == (45.25, 45.0, 255)
    assert (report.current_in, report.temperature) == (6.165, 23.0)
    assert (report.slot_counter, report.rssi, report.tail) == (0xDF40, 178, hexbytes("02 00"))
    assert report.power == 278.96625  # 45.25 V × 6.165 A, exactly


@pytest.mark.parametrize("tail", ["00", "02 00", "03 00", "00 00"])
def test_fourteen_and_fifteen_byte_reports_decode_like_thirteen(tail: str) -> None:
    events, counters = decode(received(app.POWER_REPORT, ref.POWER_REPORT_13 + hexbytes(tail)))
    (longer,) = only(events, PowerReportReceived)
    (thirteen,) = only(decode(received(app.POWER_REPORT, ref.POWER_REPORT_13))[0], PowerReportReceived)
    assert longer == thirteen and counters["invalid_power_reports"] == 0
    decoded = app.decode_power_report(ref.POWER_REPORT_13 + hexbytes(tail))
    assert decoded is not None and decoded.tail == hexbytes(tail)  # kept for diagnostics
    assert decoded._replace(tail=b"") == app.decode_power_report(ref.POWER_REPORT_13)


def test_short_power_report_is_counted_invalid() -> None:
    events, counters = decode(received(app.POWER_REPORT, ref.POWER_REPORT_13[:12]))
    assert not only(events, PowerReportReceived) and counters["invalid_power_reports"] == 1


def test_power_report_with_impossible_slot_counter_is_invalid() -> None:
    bad = ref.POWER_REPORT_13[:10] + hexbytes("2E E0") + ref.POWER_REPORT_13[12:]
    _, counters = decode(received(app.POWER_REPORT, bad))
    assert counters["invalid_power_reports"] == 1


def test_negative_temperature_is_twos_complement() -> None:
    # NOTES 6: 0xFFF is -0.1 °C.
    data = bytearray(ref.POWER_REPORT_13)
    data[5] = (data[5] & 0xF0) | 0x0F
    data[6] = 0xFF
    report = app.decode_power_report(bytes(data))
    assert report is not None and report.temperature == -0.1


def test_power_is_input_voltage_times_input_current() -> None:
    # NOTES 5: a bucking optimizer at duty 0.761 reporting 5.25 A: its string carries ~6.90 A.
    report = PowerReport(700, 250, 194, 1050, 200, b"\x00\x00\x00", 0x1000, 150)
    assert report.power == pytest.approx(35.0 * 5.25)
    assert report.current_out == pytest.approx(5.25 / (194 / 255), abs=1e-4)
    assert report._replace(duty_cycle_raw=0).current_out is None


def test_monitor_only_unit_reports_zero_output_voltage() -> None:
    report = PowerReport(700, 0, 255, 1000, 200, b"\x00\x00\x00", 0x1000, 150)
    assert report.voltage_out == 0.0 and report.power == 35.0 * 5.0


def test_reference_topology_report() -> None:
    events, _ = decode(received(app.TOPOLOGY_REPORT, ref.TOPOLOGY_REPORT, node_id=0x58))
    report = only(events, TopologyReportReceived)[0].report
    assert (report.short_address, report.node_id, report.next_hop) == (0x0002, 0x0058, 0x0001)
    assert report.long_address == hexbytes("04 C0 5B 40 00 9A 57 BB")
    assert report.rssi == 0x9F and report.tail == hexbytes("01 E9 E1 08 95 27")


def test_reference_node_table_response_with_start_index() -> None:
    # NOTES 1: start index, count, entries. The reference shows 2 of its 12 entries; we keep
    # its bytes and declare the count we actually include.
    header = ref.NODE_TABLE_RESPONSE_PREFIX[:4]
    assert (int.from_bytes(header[:2], "big"), int.from_bytes(header[2:], "big")) == (2, 12)
    page = ref.NODE_TABLE_RESPONSE_PREFIX[:2] + b"\x00\x02" + ref.NODE_TABLE_RESPONSE_PREFIX[4:]
    events, _ = decode(
        exchanged(app.NODE_TABLE_REQUEST, ref.NODE_TABLE_REQUEST, app.NODE_TABLE_RESPONSE, page)
    )
    (table_page,) = only(events, NodeTablePage)
    assert table_page.requested_index == 0 and table_page.start_index == 2  # a gap: asked 0, got 2
    assert table_page.entries == (
        NodeTableEntry(hexbytes("04 C0 5B 40 00 A2 34 6F"), 2),
        NodeTableEntry(hexbytes("04 C0 5B 40 00 A2 34 71"), 3),
    )


def test_node_table_response_with_wrong_count_is_invalid() -> None:
    _, counters = decode(
        exchanged(
            app.NODE_TABLE_REQUEST, b"\x00\x00", app.NODE_TABLE_RESPONSE, ref.NODE_TABLE_RESPONSE_PREFIX
        )
    )
    assert counters["invalid_node_table_responses"] == 1


def test_bit_15_node_ids_are_kept_as_is() -> None:
    address = hexbytes("04 C0 5B 40 00 C2 86 CC")
    page = app.encode_node_table_response(
        2, [NodeTableEntry(address, 0x0002), NodeTableEntry(address, 0x8002)]
    )
    events, _ = decode(exchanged(app.NODE_TABLE_REQUEST, b"\x00\x00", app.NODE_TABLE_RESPONSE, page))
    assert [e.node_id for e in only(events, NodeTablePage)[0].entries] == [0x0002, 0x8002]


@pytest.mark.parametrize(
    ("data", "counter", "counts"),
    [
        (ref.NETWORK_STATUS_RESPONSE, 0x0318, (0x87, 0x87, 0x87)),
        (ref.LONG_NETWORK_STATUS_RESPONSE, 0x0384, (0x87, 0x87, 0x87)),
        (ref.NETWORK_STATUS_DIVERGING, 0x02CC, (0x17, 0x1B, 0x19)),
    ],
)
def test_network_status_forms(data: bytes, counter: int, counts: tuple[int, int, int]) -> None:
    events, _ = decode(exchanged(app.NETWORK_STATUS_REQUEST, b"", app.NETWORK_STATUS_RESPONSE, data))
    status = only(events, NetworkStatus)[0]
    assert (status.counter, status.node_counts) == (counter, counts)


def test_radio_configuration_keeps_channel_and_pan_but_not_the_key() -> None:
    events, _ = decode(
        exchanged(
            app.RADIO_CONFIGURATION_REQUEST,
            b"\x00\x01",
            app.RADIO_CONFIGURATION_RESPONSE,
            ref.RADIO_CONFIGURATION_RESPONSE,
        )
    )
    config = only(events, GatewayRadioConfiguration)[0]
    assert (config.channel, config.pan_id) == (0x15, 0x24F6)
    assert "11" * 4 not in repr(config)


def test_pv_configuration_request_and_response() -> None:
    events, _ = decode(exchanged(app.PV_CONFIGURATION_REQUEST, ref.PV_CONFIGURATION_REQUEST, 0x13, b""))
    request = only(events, PvConfigurationRequested)[0]
    assert (request.node_id, request.report_type, request.period_slots, request.phase_slots) == (
        0x39,
        0x31,
        4000,
        0x097D,
    )
    events, _ = decode(received(app.PV_CONFIGURATION_RESPONSE, ref.PV_CONFIGURATION_RESPONSE, node_id=0x39))
    response = only(events, PvConfigurationReceived)[0]
    assert (response.pan_id, response.channel, response.period_slots, response.phase_slots) == (
        0x24F6,
        0x15,
        4000,
        0x097D,
    )
    assert (
        app.encode_pv_configuration_response(0x24F6, 0x15, 0x31, 4000, 0x097D)
        == ref.PV_CONFIGURATION_RESPONSE
    )


def test_string_request_and_response() -> None:
    events, _ = decode(exchanged(app.STRING_REQUEST, ref.STRING_REQUEST_TESTS, app.STRING_RESPONSE, b""))
    assert only(events, StringRequestSent)[0].text == "^00Tests\r"
    events, counters = decode(received(app.STRING_RESPONSE, b"!Tests 0 0 2 0 00 0000 00\r", node_id=0x3D))
    assert only(events, StringResponseReceived)[0].text.startswith("!Tests 0 0 2")
    assert counters["string_responses"] == 1


def test_broadcast_pv_off() -> None:
    events, _ = decode(exchanged(app.BROADCAST, ref.BROADCAST_PV_OFF, app.BROADCAST_ACK, b""))
    assert only(events, BroadcastSent)[0].pv_off is True


power_reports = st.builds(
    PowerReport,
    voltage_in_raw=st.integers(0, 0xFFF),
    voltage_out_raw=st.integers(0, 0xFFF),
    duty_cycle_raw=st.integers(0, 255),
    current_in_raw=st.integers(0, 0xFFF),
    temperature_raw=st.integers(-0x800, 0x7FF),
    unknown=st.binary(min_size=3, max_size=3),
    slot_counter=st.integers(0, 3).flatmap(
        lambda epoch: st.integers(0, 11999).map(lambda n: (epoch << 14) | n)
    ),
    rssi=st.integers(0, 255),
    tail=st.sampled_from([b"", b"\x00", b"\x02\x00", b"\x03\x00"]),
)


@given(power_reports)
def test_power_report_round_trip(report: PowerReport) -> None:
    assert app.decode_power_report(app.encode_power_report(report)) == report


@given(
    st.builds(
        TopologyReport,
        short_address=st.integers(0, 0xFFFF),
        node_id=st.integers(0, 0xFFFF),
        next_hop=st.integers(0, 0xFFFF),
        unknown=st.binary(min_size=2, max_size=2),
        long_address=st.binary(min_size=8, max_size=8),
        rssi=st.integers(0, 255),
        tail=st.binary(max_size=6),
    )
)
def test_topology_report_round_trip(report: TopologyReport) -> None:
    assert app.decode_topology_report(app.encode_topology_report(report)) == report


@given(
    st.integers(0, 0xFFFF),
    st.lists(
        st.builds(NodeTableEntry, st.binary(min_size=8, max_size=8), st.integers(0, 0xFFFF)), max_size=12
    ),
)
def test_node_table_response_round_trip(start: int, entries: list[NodeTableEntry]) -> None:
    assert app.decode_node_table_response(app.encode_node_table_response(start, entries)) == (
        start,
        tuple(entries),
    )


@given(st.integers(0, 255), st.integers(0, 0xFFFF), st.tuples(*[st.integers(0, 0xFFFF)] * 3), st.booleans())
def test_network_status_round_trip(
    unknown: int, counter: int, counts: tuple[int, int, int], with_node_id: bool
) -> None:
    data = app.encode_network_status_response(unknown, counter, counts, with_node_id=with_node_id)
    assert app.decode_network_status_response(data) == (unknown, counter, counts)
