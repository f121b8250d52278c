"""PV network layer: the packet headers inside a gateway's receive response.

Theory of operation
-------------------
Consumes: the tail of a receive response after its status fields. Emits: `(packet_type,
node_id, short_address, dsn, data)` tuples. Reference: "PV network layer".

A receive response carries zero or more packets back to back, each

    type 1 B | PV node ID 2 B | 802.15.4 short address 2 B | DSN 1 B | data length 1 B | data

The DSN comes from the gateway's radio, and two packets a node bundled into one transmission
share it, so it is informative only. If the bytes left are fewer than a header, or than the
header's declared data length, the rest of the response is a truncated packet: counted, and
decoding of that response stops there (the next response starts clean).
"""

from __future__ import annotations

HEADER_BYTES = 7

# type, node ID, short address, DSN, data, and the whole packet's bytes (for de-duplication)
ReceivedPacket = tuple[int, int, int, int, bytes, bytes]


def split_packets(data: bytes) -> tuple[list[ReceivedPacket], bool]:
    """All complete packets in `data`, and whether a truncated one followed them."""
    packets: list[ReceivedPacket] = []
    position = 0
    length = len(data)
    while position < length:
        if length - position < HEADER_BYTES:
            return packets, True
        end = position + HEADER_BYTES + data[position + 6]
        if end > length:
            return packets, True
        packets.append(
            (
                data[position],
                (data[position + 1] << 8) | data[position + 2],
                (data[position + 3] << 8) | data[position + 4],
                data[position + 5],
                data[position + HEADER_BYTES : end],
                data[position:end],
            )
        )
        position = end
    return packets, False


def encode_packet(packet_type: int, node_id: int, short_address: int, dsn: int, data: bytes) -> bytes:
    if len(data) > 255:
        raise ValueError("a PV packet carries at most 255 data bytes")
    return (
        bytes((packet_type,))
        + node_id.to_bytes(2, "big")
        + short_address.to_bytes(2, "big")
        + bytes((dsn & 0xFF, len(data)))
        + data
    )
