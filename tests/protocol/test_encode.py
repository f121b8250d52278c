"""The encoders produce the reference document's bytes from its stated values."""

from __future__ import annotations

from recorder.protocol import encode
from recorder.protocol.events import PowerReport, TopologyReport
from recorder.protocol.gateway.transport import RECEIVE_RESPONSE
from recorder.protocol.pv import application as app
from tests.helpers import hexbytes
from tests.protocol import reference_frames as ref


def test_gateway_transport_frames() -> None:
    address = ref.GATEWAY_ADDRESS
    assert encode.receive_request(0x1201, 0x1883) == ref.RECEIVE_REQUEST_1883
    assert encode.receive_request(0x1201, 0x1884) == ref.RECEIVE_REQUEST_1884
    assert encode.gateway_frame(0x1201, RECEIVE_RESPONSE, hexbytes("00 FF EC 66 40")) == ref.LINK_EXAMPLE
    assert encode.receive_response(0x1201, 0x00FF, 0x7C, 0xDBC2) == ref.LINK_ESCAPE_EXAMPLE
    assert (
        encode.command_request(0x1201, app.STRING_REQUEST, 0x66, app.encode_string_request(9, "^00Info\r"))
        == ref.COMMAND_REQUEST
    )
    assert encode.command_response(0x1201, app.STRING_RESPONSE, 0x66) == ref.COMMAND_RESPONSE
    assert encode.ping_request(0x1201) == ref.PING_REQUEST
    assert encode.ping_response(0x1201) == ref.PING_RESPONSE
    assert encode.enumeration_start_request(0x1235) == ref.ENUMERATION_START_REQUEST
    assert encode.enumeration_start_response() == ref.ENUMERATION_START_RESPONSE
    assert encode.enumeration_request(0x1235) == ref.ENUMERATION_REQUEST
    assert encode.enumeration_response(0x1235, address) == ref.ENUMERATION_RESPONSE
    assert encode.assign_gateway_id_request(0x1235, address, 0x1201) == ref.ASSIGN_REQUEST_1
    assert encode.assign_gateway_id_response(0x1235) == ref.ASSIGN_RESPONSE_1
    assert encode.assign_gateway_id_request(0x1201, address, 0x1202) == ref.ASSIGN_REQUEST_2
    assert encode.assign_gateway_id_response(0x1201) == ref.ASSIGN_RESPONSE_2
    assert encode.identify_request(0x1201) == ref.IDENTIFY_REQUEST_1201
    assert encode.identify_response(0x1201, address) == ref.IDENTIFY_RESPONSE_1201
    assert encode.identify_request(0x1202) == ref.IDENTIFY_REQUEST_1202
    assert encode.identify_response(0x1202, address) == ref.IDENTIFY_RESPONSE_1202
    assert encode.controller_frame(0, 0x0010, hexbytes("37 24 92 66")) == ref.UNKNOWN_0010
    assert encode.gateway_frame(0, 0x0011) == ref.UNKNOWN_0011
    assert encode.version_request(0x1201) == ref.VERSION_REQUEST
    assert encode.version_response(0x1201, ref.GATEWAY_VERSION) == ref.VERSION_RESPONSE
    assert encode.enumeration_end_request(0x1201) == ref.ENUMERATION_END_REQUEST
    assert encode.enumeration_end_response(0x1201) == ref.ENUMERATION_END_RESPONSE


def test_pv_application_packets() -> None:
    report = PowerReport(0x2B6, 0x158, 0xFF, 0x032, 0x158, hexbytes("81 00 6E"), 0x8FA0, 0x7E)
    assert app.encode_power_report(report) == ref.POWER_REPORT_13
    report_15 = PowerReport(905, 450, 255, 1233, 230, hexbytes("92 00 64"), 0xDF40, 0xB2, hexbytes("02 00"))
    assert app.encode_power_report(report_15) == ref.POWER_REPORT_15
    topology = TopologyReport(
        2,
        0x58,
        1,
        hexbytes("00 02"),
        hexbytes("04 C0 5B 40 00 9A 57 BB"),
        0x9F,
        hexbytes("01 E9 E1 08 95 27"),
    )
    assert app.encode_topology_report(topology) == ref.TOPOLOGY_REPORT
    assert app.encode_node_table_request(0) == ref.NODE_TABLE_REQUEST
    assert (
        app.encode_network_status_response(1, 0x0318, (0x87,) * 3, with_node_id=True)
        == ref.NETWORK_STATUS_RESPONSE
    )
    assert app.encode_network_status_response(1, 0x0384, (0x87,) * 3) == ref.LONG_NETWORK_STATUS_RESPONSE
    assert app.encode_string_request(0x3D, "^00Tests\r") == ref.STRING_REQUEST_TESTS
    rest = ref.PV_CONFIGURATION_REQUEST[10:]
    assert app.encode_pv_configuration_request(0x39, 0x31, 4000, 0x097D, rest) == ref.PV_CONFIGURATION_REQUEST
    assert (
        app.encode_radio_configuration_response(0x15, 0x24F6, ref.RADIO_CONFIGURATION_RESPONSE[4:])
        == ref.RADIO_CONFIGURATION_RESPONSE
    )
