"""Readings and health as InfluxDB line protocol (pure functions, no IO).

Measurement `tigo_optimizer`, one point per reading:

    tags    barcode (when known), gateway (the gateway ID, e.g. 4609), node_id,
            name and string (the user's labels, when set), site (`--site`, when set)

(The gateway tag is the numeric ID rather than the TAP's barcode: the barcode is only heard when
the controller enumerates its gateways, perhaps months after the recorder starts, and a tag that
changes value would split every series.)
    fields  voltage_in V, voltage_out V, current_in A, current_out A (omitted when the duty cycle
            is 0), power W (= voltage_in × current_in), duty_cycle 0..1, temperature °C,
            rssi (raw, integer)

Measured values are written exactly as the wire's steps give them (50 mV, 5 mA, 0.1 °C). The two
derived ones are rounded to a resolution well below what the measurements support: power to
0.01 W (Vin × Iin is only good to about ±0.5 W) and current_out to 1 mA (Iin comes in 5 mA
steps), instead of float noise like 6.904411764705882. `power_text` and `current_out_text` are
the only place that formats them; `PointFormatter` caches their results.
    time    the measurement time, in milliseconds

The same reading always produces the same series key and timestamp, so writing it twice
leaves one point in InfluxDB. Values come from the raw wire integers with the conversions of
`recorder.protocol.units`; each is one division of integers, so its float is exact-then-rounded
and `repr` (the shortest text that reads back the same) is reproducible; every field stays a
float field.

`PointFormatter` is the one place a reading becomes a line, for `run` (from the outbox) and for
`backfill` (straight from the placement step). It formats batches with caches, because a
backfill formats millions and formatting floats is the costliest part of a line: the texts of
the measured fields for every raw value are built once (module tables), the texts of the two
computed fields are cached by the raw integers that decide them, and the tags by node.

Measurement `tigo_energy`, one point per optimizer and local day (`recorder.energy`): the same
tags as `tigo_optimizer` (built by the same function), fields `energy_wh` (float) and
`uncovered_seconds` (integer), time = the day's local midnight; rewritten during the day, so the
point holds the day's latest total.

Measurement `tigo_recorder`, the recorder's own health: integer counters and gauges, tagged
`source` (and `site`). `source` is the kind of source only (serial, tcp, capture, raw,
simulator), so that its series key stays the same when a converter's address or port, a device
name or a simulated duration changes (`source_tag`).

Rules every engine that speaks line protocol agrees on, which `TAG_KEYS`/`FIELD_KEYS` keep (and
tests/sinks/test_points.py checks): a tag key is never also a field key of the same measurement
(InfluxDB 3 refuses such a write; 1.x/2.x make queries ambiguous), no key is `time` or starts with
`_` (reserved), names are plain lower-case identifiers, a tag with no value is left out rather
than written empty, and a field keeps its type forever (1.x refuses a type change per shard).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from recorder.protocol import units
from recorder.protocol.barcode import barcode_from_address
from recorder.reading import Reading
from recorder.timestamps import to_millis

OPTIMIZER_MEASUREMENT = "tigo_optimizer"
ENERGY_MEASUREMENT = "tigo_energy"
RECORDER_MEASUREMENT = "tigo_recorder"
# Every tag key each measurement may carry, and the optimizer's field keys (the health fields
# are the names `Ingest.health_values` produces).
TAG_KEYS = {
    OPTIMIZER_MEASUREMENT: ("barcode", "gateway", "name", "node_id", "site", "string"),
    ENERGY_MEASUREMENT: ("barcode", "gateway", "name", "node_id", "site", "string"),
    RECORDER_MEASUREMENT: ("site", "source"),
}
OPTIMIZER_FIELD_KEYS = (
    "voltage_in",
    "voltage_out",
    "current_in",
    "current_out",
    "power",
    "duty_cycle",
    "temperature",
    "rssi",
)
ENERGY_FIELD_KEYS = ("energy_wh", "uncovered_seconds")

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": " ", "\r": " "})
# A backslash that ends a tag value, or stands before a character we escape, would escape our
# own escape or the delimiter after it, and every point of that series would be refused. Line
# protocol has no way to write such a backslash, so it becomes a slash.
_LONE_BACKSLASH = re.compile(r"\\+(?=[,= \n\r]|$)")


def escape_tag(value: str) -> str:
    if "\\" in value:
        value = _LONE_BACKSLASH.sub(lambda match: "/" * len(match.group(0)), value)
    return value.translate(_TAG_ESCAPES)


def _number(value: float) -> str:
    # repr gives the shortest text that reads back as the same float; always a float field.
    text = repr(float(value))
    return text


@dataclass(frozen=True, slots=True)
class PointIdentity:
    """Everything that becomes a tag of a reading's point."""

    gateway: str
    node_id: int
    barcode: str | None = None
    name: str | None = None
    string: str | None = None
    site: str | None = None


class Labelled(Protocol):
    """A user's labels of an optimizer (`recorder.storage.state.Labels`)."""

    @property
    def name(self) -> str | None: ...

    @property
    def string(self) -> str | None: ...


def point_identity(
    gateway_id: int,
    node_id: int,
    long_address: bytes | None,
    labels: Mapping[bytes, Labelled],
    site: str | None = None,
) -> PointIdentity:
    """The tags of a reading: its node and site, and when the optimizer is known its barcode and
    labels."""
    if long_address is None:
        return PointIdentity(gateway=str(gateway_id), node_id=node_id, site=site)
    found = labels.get(long_address)
    return PointIdentity(
        gateway=str(gateway_id),
        node_id=node_id,
        barcode=barcode_from_address(long_address),
        name=found.name if found else None,
        string=found.string if found else None,
        site=site,
    )


def optimizer_tags(identity: PointIdentity, measurement: str = OPTIMIZER_MEASUREMENT) -> str:
    """Measurement and tags: the series key of a reading's point (tags in sorted order), and of
    its optimizer's daily energy point."""
    tags = [measurement]
    if identity.barcode:
        tags.append(f"barcode={escape_tag(identity.barcode)}")
    tags.append(f"gateway={escape_tag(identity.gateway)}")
    if identity.name:
        tags.append(f"name={escape_tag(identity.name)}")
    tags.append(f"node_id={identity.node_id}")
    if identity.site:
        tags.append(f"site={escape_tag(identity.site)}")
    if identity.string:
        tags.append(f"string={escape_tag(identity.string)}")
    return ",".join(tags)


def _field_texts(name: str, convert: Callable[[int], float], raws: range) -> list[str]:
    return [f"{name}={convert(raw)!r}," for raw in raws]


# Field texts for every raw value, built once. Index = raw value (temperature: raw + 2048).
VOLTAGE_IN = _field_texts("voltage_in", units.voltage_in, range(0x1000))
VOLTAGE_OUT = _field_texts("voltage_out", units.voltage_out, range(0x1000))
CURRENT_IN = _field_texts("current_in", units.current_in, range(0x1000))
DUTY_CYCLE = _field_texts("duty_cycle", units.duty_cycle, range(0x100))
TEMPERATURE = _field_texts("temperature", units.temperature, range(-0x800, 0x800))

TEXT_CACHE_SIZE = 1 << 16  # entries per computed-field cache (under 10 MB each), then cleared

TagsOf = Callable[[int, int, bytes | None], PointIdentity]  # (gateway, node, address) -> tags


POWER_DECIMALS = 2  # W
CURRENT_OUT_DECIMALS = 3  # A


def power_value(voltage_in_raw: int, current_in_raw: int) -> float:
    """The power a point carries: `units.power` (Vin × Iin), to 0.01 W. Daily energy integrates
    the same value (`recorder.energy.Sample`)."""
    return round(units.power(voltage_in_raw, current_in_raw), POWER_DECIMALS)


def power_text(voltage_in_raw: int, current_in_raw: int) -> str:
    """The power field (`power_value`)."""
    return f"power={power_value(voltage_in_raw, current_in_raw)!r},"


def current_out_text(current_in_raw: int, duty_cycle_raw: int) -> str:
    """The current_out field: `units.current_out` (Iin / duty), to 1 mA; none without a duty cycle."""
    value = units.current_out(current_in_raw, duty_cycle_raw)
    if value is None:
        return ""  # no output current without a duty cycle: the field is left out
    return f"current_out={round(value, CURRENT_OUT_DECIMALS)!r},"


def source_tag(description: str) -> str:
    """The `source` tag of `tigo_recorder`: the kind of source, without what varies between runs.

    `description` is `Source.describe()` ("tcp 192.168.1.50:502", "serial /dev/ttyUSB0",
    "simulator (1 gateway(s) × 135 optimizers, 3:00:00)", "capture /path", "raw /path").
    """
    return description.split(" ", 1)[0] if description else "unknown"


class PointFormatter:
    """Readings to `tigo_optimizer` lines (see the module docstring).

    `tags` gives a reading's tags from its gateway, node ID and long address; its answers are
    cached per node, so call `forget_tags()` when what it returns changes (labels edited).
    """

    def __init__(self, tags: TagsOf) -> None:
        self.tags = tags
        # gateway << 16 | node -> (long address, measurement and tags) last used for that node
        self._prefixes: dict[int, tuple[bytes | None, str]] = {}
        # Texts of the computed fields by the raw integers that decide them: power by Vin × Iin,
        # current_out by Iin << 8 | duty. Readings repeat values (50 mV and 5 mA steps).
        self.power_texts: dict[int, str] = {}
        self.current_out_texts: dict[int, str] = {}

    def forget_tags(self) -> None:
        self._prefixes.clear()

    def lines(self, readings: Iterable[Reading], unresolved: list[Reading] | None = None) -> list[str]:
        """The lines of `readings`; given `unresolved`, readings whose node is not known yet go
        there instead (the backfill holds them), else they are formatted without a barcode."""
        power_texts, current_out_texts = self.power_texts, self.current_out_texts
        if len(power_texts) > TEXT_CACHE_SIZE or len(current_out_texts) > TEXT_CACHE_SIZE:
            power_texts.clear()
            current_out_texts.clear()
        prefixes = self._prefixes
        voltage_in_texts, voltage_out_texts, current_in_texts = VOLTAGE_IN, VOLTAGE_OUT, CURRENT_IN
        duty_cycle_texts, temperature_texts = DUTY_CYCLE, TEMPERATURE
        lines: list[str] = []
        append = lines.append
        for reading in readings:
            (gateway_id, node_id, measured_ms, _, _, voltage_in, voltage_out, duty_cycle, current_in,
             temperature, rssi, address) = reading  # fmt: skip
            if address is None and unresolved is not None:
                unresolved.append(reading)
                continue
            node = (gateway_id << 16) | node_id
            cached = prefixes.get(node)
            if cached is not None and (cached[0] is address or cached[0] == address):
                prefix = cached[1]
            else:
                prefix = optimizer_tags(self.tags(gateway_id, node_id, address))
                prefixes[node] = (address, prefix)
            current_key = (current_in << 8) | duty_cycle
            current_out = current_out_texts.get(current_key)
            if current_out is None:
                current_out = current_out_texts[current_key] = current_out_text(current_in, duty_cycle)
            product = voltage_in * current_in  # power depends on nothing else
            power = power_texts.get(product)
            if power is None:
                power = power_texts[product] = power_text(voltage_in, current_in)
            append(
                f"{prefix} {voltage_in_texts[voltage_in]}{voltage_out_texts[voltage_out]}"
                f"{current_in_texts[current_in]}{current_out}{power}{duty_cycle_texts[duty_cycle]}"
                f"{temperature_texts[temperature + 0x800]}rssi={rssi}i {measured_ms}"
            )
        return lines


def optimizer_line(identity: PointIdentity, reading: Reading) -> str:
    """One reading's line with the given tags (tests, diagnostics: `PointFormatter` batches)."""
    return PointFormatter(lambda _gateway, _node, _address: identity).lines([reading])[0]


def energy_line(identity: PointIdentity, day_start_ms: int, energy_wh: float, uncovered_seconds: int) -> str:
    tags = optimizer_tags(identity, ENERGY_MEASUREMENT)
    return f"{tags} energy_wh={_number(energy_wh)},uncovered_seconds={int(uncovered_seconds)}i {day_start_ms}"


def recorder_line(
    source: str, values: dict[str, int | float | bool], at: datetime, site: str | None = None
) -> str:
    fields = []
    for name, value in sorted(values.items()):
        if isinstance(value, bool):
            fields.append(f"{name}={'true' if value else 'false'}")
        elif isinstance(value, int):
            fields.append(f"{name}={value}i")
        else:
            fields.append(f"{name}={_number(value)}")
    tags = f"{RECORDER_MEASUREMENT},site={escape_tag(site)}" if site else RECORDER_MEASUREMENT
    return f"{tags},source={escape_tag(source_tag(source))} {','.join(fields)} {to_millis(at)}"
