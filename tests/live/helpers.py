"""Readings, clocks and a reader of the status page's DOM for the live-face tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

from recorder.reading import MEASURED_MS, RECEIVED_MS, Reading
from recorder.timestamps import from_millis, to_millis

T0 = datetime(2025, 6, 21, 12, 0, tzinfo=UTC)
GATEWAY = 4609


def address(number: int) -> bytes:
    return bytes.fromhex("04C05B4000") + number.to_bytes(3, "big")


def reading(
    node_id: int,
    seconds: float,
    *,
    long_address: bytes | None = None,
    voltage_in_raw: int = 650,  # 32.5 V
    current_in_raw: int = 1800,  # 9 A
    duty_cycle_raw: int = 255,
    temperature_raw: int = 553,
    gateway_id: int = GATEWAY,
) -> Reading:
    """A compact reading measured `seconds` after T0 and received a second later."""
    measured = to_millis(T0 + timedelta(seconds=seconds))
    return (
        gateway_id,
        node_id,
        measured,
        measured + 1000,
        int(seconds * 200) % 0xFFFF,
        voltage_in_raw,
        325,
        duty_cycle_raw,
        current_in_raw,
        temperature_raw,
        180,
        long_address,
    )


def measured_at(reading: Reading) -> datetime:
    return from_millis(reading[MEASURED_MS])


def received_at(reading: Reading) -> datetime:
    return from_millis(reading[RECEIVED_MS])


class FakeMonotonic:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TileParser(HTMLParser):
    """Collects, per tile, its classes, barcode attribute and the text of its barcode, power and
    badge lines; and the section headings."""

    FIELDS = ("bc", "pw", "badge")
    VOID = ("br", "img", "meta", "link", "input")

    def __init__(self) -> None:
        super().__init__()
        self.tiles: list[dict[str, str]] = []
        self.headings: list[str] = []
        self._depth = 0
        self._tile_depth: int | None = None
        self._field: str | None = None
        self._field_depth = 0
        self._in_heading = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        self._depth += 1
        values = dict(attrs)
        classes = (values.get("class") or "").split()
        if tag == "div" and "tile" in classes:
            tile = {"data-barcode": values.get("data-barcode") or "", "cls": " ".join(classes)}
            self.tiles.append(tile | dict.fromkeys(self.FIELDS, ""))
            self._tile_depth = self._depth
        elif self._tile_depth is not None and self._field is None:
            field = next((name for name in self.FIELDS if name in classes), None)
            if field is not None:
                self._field, self._field_depth = field, self._depth
        if tag == "h2":
            self._in_heading = True
            self.headings.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if self._field is not None and self._depth == self._field_depth:
            self._field = None
        if self._tile_depth is not None and self._depth == self._tile_depth:
            self._tile_depth = None
        if tag == "h2":
            self._in_heading = False
        self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._field is not None and self.tiles:
            self.tiles[-1][self._field] += data
        if self._in_heading:
            self.headings[-1] += data
