"""PV network layer: the packet headers inside a gateway's receive response.

Theory of operation
-------------------
Consumes: the tail of a receive response after its status fields. Emits: `(packet_type,
node_id, packet bytes)` tuples (`ReceivedPacket`). Reference: "PV network layer".

A receive response carries zero or more packets back to back, each

    type 1 B | PV node ID 2 B | 802.15.4 short address 2 B | DSN 1 B | data length 1 B | data

The DSN comes from the gateway's radio, and two packets a node bundled into one transmission
share it, so it is informative only; like the short address it stays in the packet's bytes.
If the bytes left are fewer than a header, or than the header's declared data length, the rest
of the response is a truncated packet: counted, and decoding of that response stops there (the
next response starts clean).
"""

from __future__ import annotations

HEADER_BYTES = 7  # a packet's data starts here

# (type, PV node ID, the whole packet's bytes): the header fields the layers above need. The
# packet's bytes identify it (the transport drops a packet byte-identical to one it has just
# seen) and hold its data from `HEADER_BYTES` on, decoded in place by the application layer.
ReceivedPacket = tuple[int, int, bytes]


def split_packets(data: bytes, start: int = 0) -> tuple[list[ReceivedPacket], bool]:
    """The complete packets in `data[start:]`, and whether a truncated one followed them."""
    packets: list[ReceivedPacket] = []
    append = packets.append
    position = start
    length = len(data)
    while position < length:
        end = position + HEADER_BYTES
        if end > length:
            return packets, True
        end += data[position + 6]
        if end > length:
            return packets, True
        append((data[position], (data[position + 1] << 8) | data[position + 2], data[position:end]))
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
