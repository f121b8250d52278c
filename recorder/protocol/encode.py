"""Bus bytes for whole frames, as a passive listener would see them.

Each function returns preamble + delimited, escaped, checksummed frame for one direction:
`controller_*` frames are addressed to a gateway, `gateway_*` frames come from one. The payload
encoders live beside their decoders (`gateway.transport`, `pv.application`, `pv.network`); this
module only combines them with `gateway.link.encode_frame`, so the simulator and the tests build
traffic from the same definitions the decoder uses.
"""

from __future__ import annotations

from collections.abc import Iterable

from recorder.protocol.gateway import transport as t
from recorder.protocol.gateway.link import encode_frame
from recorder.protocol.pv.network import encode_packet


def controller_frame(gateway_id: int, frame_type: int, payload: bytes = b"") -> bytes:
    return encode_frame(gateway_id, frame_type, payload, from_gateway=False)


def gateway_frame(gateway_id: int, frame_type: int, payload: bytes = b"") -> bytes:
    return encode_frame(gateway_id, frame_type, payload, from_gateway=True)


def receive_request(gateway_id: int, packet_number: int) -> bytes:
    return controller_frame(gateway_id, t.RECEIVE_REQUEST, t.encode_receive_request(packet_number))


def receive_response(
    gateway_id: int,
    status: int,
    packet_number: int,
    slot_counter: int,
    packets: Iterable[bytes] = (),
    *,
    rx_buffers_used: int = 0,
    tx_buffers_free: int = 0x0E,
) -> bytes:
    payload = t.encode_receive_response(
        status,
        packet_number,
        slot_counter,
        b"".join(packets),
        rx_buffers_used=rx_buffers_used,
        tx_buffers_free=tx_buffers_free,
    )
    return gateway_frame(gateway_id, t.RECEIVE_RESPONSE, payload)


def packet(packet_type: int, node_id: int, data: bytes, *, short_address: int = 0, dsn: int = 0) -> bytes:
    """One PV packet as it appears inside a receive response."""
    return encode_packet(packet_type, node_id, short_address, dsn, data)


def command_request(gateway_id: int, packet_type: int, sequence: int, data: bytes = b"") -> bytes:
    return controller_frame(
        gateway_id, t.COMMAND_REQUEST, t.encode_command_request(packet_type, sequence, data)
    )


def command_response(
    gateway_id: int, packet_type: int, sequence: int, data: bytes = b"", *, tx_buffers_free: int = 0x0D
) -> bytes:
    payload = t.encode_command_response(packet_type, sequence, data, tx_buffers_free)
    return gateway_frame(gateway_id, t.COMMAND_RESPONSE, payload)


def ping_request(gateway_id: int) -> bytes:
    return controller_frame(gateway_id, t.PING_REQUEST, b"\x01")


def ping_response(gateway_id: int) -> bytes:
    return gateway_frame(gateway_id, t.PING_RESPONSE, b"\x01")


def enumeration_start_request(enumeration_id: int) -> bytes:
    return controller_frame(
        0, t.ENUMERATION_START_REQUEST, t.encode_enumeration_start_request(enumeration_id)
    )


def enumeration_start_response() -> bytes:
    return gateway_frame(0, t.ENUMERATION_START_RESPONSE)


def enumeration_request(enumeration_id: int) -> bytes:
    return controller_frame(enumeration_id, t.ENUMERATION_REQUEST)


def enumeration_response(enumeration_id: int, long_address: bytes) -> bytes:
    return gateway_frame(
        enumeration_id, t.ENUMERATION_RESPONSE, t.encode_identity_response(long_address, enumeration_id)
    )


def assign_gateway_id_request(current_id: int, long_address: bytes, new_gateway_id: int) -> bytes:
    payload = t.encode_assign_gateway_id_request(long_address, new_gateway_id)
    return controller_frame(current_id, t.ASSIGN_GATEWAY_ID_REQUEST, payload)


def assign_gateway_id_response(current_id: int) -> bytes:
    return gateway_frame(current_id, t.ASSIGN_GATEWAY_ID_RESPONSE)


def identify_request(gateway_id: int) -> bytes:
    return controller_frame(gateway_id, t.IDENTIFY_REQUEST)


def identify_response(gateway_id: int, long_address: bytes) -> bytes:
    return gateway_frame(
        gateway_id, t.IDENTIFY_RESPONSE, t.encode_identity_response(long_address, gateway_id)
    )


def version_request(gateway_id: int) -> bytes:
    return controller_frame(gateway_id, t.VERSION_REQUEST)


def version_response(gateway_id: int, version: str) -> bytes:
    return gateway_frame(gateway_id, t.VERSION_RESPONSE, version.encode("ascii"))


def enumeration_end_request(gateway_id: int) -> bytes:
    return controller_frame(gateway_id, t.ENUMERATION_END_REQUEST)


def enumeration_end_response(gateway_id: int) -> bytes:
    return gateway_frame(gateway_id, t.ENUMERATION_END_RESPONSE)
