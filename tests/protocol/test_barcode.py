from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.protocol.barcode import (
    VENDOR_PREFIX,
    address_from_barcode,
    barcode_from_address,
    format_long_address,
    normalize_barcode,
    parse_long_address,
)

# NOTES 10 (checked on real hardware) plus the reference's own two examples.
KNOWN = {
    "04:C0:5B:40:00:C2:86:CC": "4-C286CCZ",
    "04:C0:5B:40:00:C2:83:4B": "4-C2834BY",
    "04:C0:5B:40:00:C2:5D:F5": "4-C25DF5J",
    "04:C0:5B:40:00:C2:5F:7B": "4-C25F7BG",
    "04:C0:5B:40:00:C2:5E:EA": "4-C25EEAP",
    "04:C0:5B:40:00:C3:F2:C9": "4-C3F2C9H",
    "04:C0:5B:40:00:9A:57:A2": "4-9A57A2L",
    "04:C0:5B:30:00:02:BE:16": "3-2BE16Y",
}


@pytest.mark.parametrize(("address", "barcode"), KNOWN.items())
def test_known_barcodes_both_ways(address: str, barcode: str) -> None:
    raw = parse_long_address(address)
    assert barcode_from_address(raw) == barcode
    assert address_from_barcode(barcode) == raw
    assert format_long_address(raw) == address


def test_wrong_check_character_is_rejected_with_the_expected_one() -> None:
    with pytest.raises(ValueError, match="expected 'L'"):
        address_from_barcode("4-9A57A2M")


@pytest.mark.parametrize("text", ["", "4-", "49A57A2L", "4-9A57A2", "X-9A57A2L", "4-12345678901L"])
def test_malformed_barcodes_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        address_from_barcode(text)


def test_lower_case_is_accepted_and_normalised() -> None:
    assert normalize_barcode("4-9a57a2l") == "4-9A57A2L"


def test_non_tigo_address_has_no_barcode() -> None:
    assert barcode_from_address(bytes(8)) is None


@given(st.binary(min_size=5, max_size=5))
def test_round_trip_for_every_tigo_address(suffix: bytes) -> None:
    address = VENDOR_PREFIX + suffix
    barcode = barcode_from_address(address)
    assert barcode is not None
    assert address_from_barcode(barcode) == address
