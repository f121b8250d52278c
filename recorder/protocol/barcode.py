"""Long addresses and the barcodes printed on Tigo hardware.

Theory of operation
-------------------
Every radio node (optimizer or TAP) has a 64-bit IEEE 802.15.4 long address. Tigo's are all
`04:C0:5B:...`; the barcode on the label is a compact form of the same number (reference: "PV
link layer / Barcodes"):

    04:C0:5B:40:00:9A:57:A2  ->  4-9A57A2L

* the vendor prefix `04:C0:5B` is implied;
* the next nibble (`4` for optimizers, `3` for gateways) is written first, then `-`;
* the remaining nine nibbles follow with leading zeros dropped (so the length varies);
* the last character is a CRC-4 (polynomial 0x3, initial value 0x2, MSB first) over all eight
  address bytes, written with the digits `GHJKLMNPRSTVWXYZ`.

`barcode_from_address` and `address_from_barcode` are exact inverses for Tigo addresses; parsing
validates the check character so a mistyped barcode is rejected, not silently accepted.
"""

from __future__ import annotations

import re

VENDOR_PREFIX = bytes((0x04, 0xC0, 0x5B))
CHECK_DIGITS = "GHJKLMNPRSTVWXYZ"
_BARCODE_PATTERN = re.compile(r"^([0-9A-F])-([0-9A-F]{1,9})([GHJKLMNPRSTVWXYZ])$")


def _crc4_table() -> list[int]:
    # Entry i is the CRC-4 register after shifting byte i through it, starting from zero.
    table = []
    for value in range(256):
        register = 0
        for bit_index in range(7, -1, -1):
            feedback = ((register >> 3) & 1) ^ ((value >> bit_index) & 1)
            register = ((register << 1) & 0xF) ^ (0x3 if feedback else 0)
        table.append(register)
    return table


_CRC4_TABLE = _crc4_table()


def crc4(address: bytes) -> int:
    """The barcode check nibble of an 8-byte long address."""
    register = 0x2
    for byte in address:
        # The register occupies the high nibble of the index, as in a table-driven CRC.
        register = _CRC4_TABLE[byte ^ (register << 4)]
    return register


def format_long_address(address: bytes) -> str:
    """`04:C0:5B:40:00:9A:57:A2` style."""
    return ":".join(f"{byte:02X}" for byte in address)


def parse_long_address(text: str) -> bytes:
    """Inverse of `format_long_address`; accepts `:`, `-` or no separators. Raises ValueError."""
    digits = re.sub(r"[:\-\s]", "", text.strip())
    if not re.fullmatch(r"[0-9A-Fa-f]{16}", digits):
        raise ValueError(f"not a long address (expected 8 hex bytes like 04:C0:5B:40:00:9A:57:A2): {text!r}")
    return bytes.fromhex(digits)


def is_tigo_address(address: bytes) -> bool:
    return len(address) == 8 and address[:3] == VENDOR_PREFIX


def barcode_from_address(address: bytes) -> str | None:
    """The printed barcode of a Tigo long address, or None for a non-Tigo address."""
    if not is_tigo_address(address):
        return None
    nibbles = address[3:].hex().upper()  # ten nibbles after the vendor prefix
    digits = nibbles[1:].lstrip("0") or "0"
    return f"{nibbles[0]}-{digits}{CHECK_DIGITS[crc4(address)]}"


def address_from_barcode(barcode: str) -> bytes:
    """The long address behind a barcode such as `4-9A57A2L`. Raises ValueError if malformed."""
    match = _BARCODE_PATTERN.match(barcode.strip().upper())
    if match is None:
        raise ValueError(f"not a Tigo barcode (expected a form like 4-9A57A2L): {barcode!r}")
    nibble, digits, check = match.groups()
    address = VENDOR_PREFIX + bytes.fromhex(nibble + digits.rjust(9, "0"))
    expected = CHECK_DIGITS[crc4(address)]
    if check != expected:
        raise ValueError(
            f"barcode {barcode!r} has check character {check!r}, expected {expected!r}: mistyped?"
        )
    return address


def normalize_barcode(barcode: str) -> str:
    """Validate and return the canonical (upper-case) form. Raises ValueError."""
    result = barcode_from_address(address_from_barcode(barcode))
    assert result is not None
    return result


def describe_address(address: bytes) -> str:
    """`04:C0:5B:40:00:9A:57:A2 (4-9A57A2L)`, for humans."""
    barcode = barcode_from_address(address)
    text = format_long_address(address)
    return f"{text} ({barcode})" if barcode else text
