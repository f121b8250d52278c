"""CRC-16 used by the gateway link layer.

Theory of operation
-------------------
Gateway frames carry a CRC-16/CCITT in its bit-reflected form (polynomial 0x1021, processed LSB
first, i.e. 0x8408 reflected) whose initial value is the unusual 0x8408 (reference: "Gateway link
layer / Checksum"). It covers address, type and payload and is sent low byte first.

Computing it byte by byte in Python would dominate decode time, so we lean on the C routine
`binascii.crc_hqx`, which implements the *non-reflected* CCITT CRC. A reflected CRC over some
bytes equals the bit-reversal of the non-reflected CRC over the bit-reversed bytes with a
bit-reversed initial value. Bit-reversing every byte is a single `bytes.translate`.

Because there is no final XOR and the CRC is appended low byte first, running the CRC over a
body *including* its two checksum bytes yields zero for an intact frame; `frame_is_intact`
uses that to check a frame with one C call and no slicing.
"""

from __future__ import annotations

import binascii

INITIAL_VALUE = 0x8408


def _reverse_bits(value: int, width: int) -> int:
    result = 0
    for _ in range(width):
        result = (result << 1) | (value & 1)
        value >>= 1
    return result


_BIT_REVERSED_BYTES = bytes(_reverse_bits(i, 8) for i in range(256))
_REVERSED_INITIAL = _reverse_bits(INITIAL_VALUE, 16)


def crc16(data: bytes) -> int:
    """The link-layer checksum of `data` (address + type + payload)."""
    return _reverse_bits(binascii.crc_hqx(data.translate(_BIT_REVERSED_BYTES), _REVERSED_INITIAL), 16)


def crc16_reference(data: bytes) -> int:
    """Bit-by-bit implementation, kept to cross-check the fast path in tests."""
    crc = INITIAL_VALUE
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


def frame_is_intact(body_with_crc: bytes) -> bool:
    """True when the last two bytes are the correct checksum of the bytes before them."""
    return binascii.crc_hqx(body_with_crc.translate(_BIT_REVERSED_BYTES), _REVERSED_INITIAL) == 0


def append_crc(body: bytes) -> bytes:
    """`body` followed by its checksum, low byte first, as it travels on the bus."""
    return body + crc16(body).to_bytes(2, "little")
