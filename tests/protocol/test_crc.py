from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from recorder.protocol.crc import append_crc, crc16, crc16_reference, frame_is_intact
from tests.helpers import hexbytes


def test_reference_worked_example() -> None:
    # "Gateway link layer / Checksum": the body below checksums to 0x85A3, sent as A3 85.
    body = hexbytes("92 01 01 49 00 FF 7C DB C2")
    assert crc16(body) == 0x85A3
    assert append_crc(body)[-2:] == hexbytes("A3 85")
    assert frame_is_intact(body + hexbytes("A3 85"))
    assert not frame_is_intact(body + hexbytes("A3 86"))


@given(st.binary(max_size=300))
def test_fast_crc_matches_bitwise_definition(data: bytes) -> None:
    assert crc16(data) == crc16_reference(data)
    assert frame_is_intact(append_crc(data))
