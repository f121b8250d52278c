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
the only place that formats them; the backfill fast lane (`recorder.replay`) caches their results.
    time    the measurement time, in milliseconds

The same reading always produces the same series key and timestamp, so writing it twice
leaves one point in InfluxDB. Values come from the raw wire integers with the same conversions
the decoder uses.

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
from dataclasses import dataclass
from datetime import datetime

from recorder.protocol.events import PowerReport
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


def _field_texts(name: str, values: range, scale: int) -> list[str]:
    return [f"{name}={value / scale!r}," for value in values]


# Field texts for every raw value, built once: formatting floats is the bulk of building a
# line, and a backfill builds millions. Index = raw value (temperature: raw + 2048).
VOLTAGE_IN = _field_texts("voltage_in", range(0x1000), 20)  # 50 mV steps
VOLTAGE_OUT = _field_texts("voltage_out", range(0x1000), 10)  # 100 mV steps
CURRENT_IN = _field_texts("current_in", range(0x1000), 200)  # 5 mA steps
DUTY_CYCLE = _field_texts("duty_cycle", range(0x100), 255)
TEMPERATURE = _field_texts("temperature", range(-0x800, 0x800), 10)  # 0.1 °C steps


POWER_DECIMALS = 2  # W
CURRENT_OUT_DECIMALS = 3  # A


def power_value(voltage_in_raw: int, current_in_raw: int) -> float:
    """The power a point carries: Vin × Iin, 50 mV × 5 mA steps (= raw product / 4000), to 0.01 W.
    Daily energy integrates the same value (`recorder.energy.Sample`)."""
    return round(voltage_in_raw * current_in_raw / 4000, POWER_DECIMALS)


def power_text(voltage_in_raw: int, current_in_raw: int) -> str:
    """The power field (`power_value`)."""
    return f"power={power_value(voltage_in_raw, current_in_raw)!r},"


def current_out_text(current_in_raw: int, duty_cycle_raw: int) -> str:
    """The current_out field: Iin / duty (duty = raw / 255), to 1 mA; none without a duty cycle."""
    if not duty_cycle_raw:
        return ""  # no output current without a duty cycle
    return f"current_out={round(current_in_raw * 255 / (200 * duty_cycle_raw), CURRENT_OUT_DECIMALS)!r},"


def source_tag(description: str) -> str:
    """The `source` tag of `tigo_recorder`: the kind of source, without what varies between runs.

    `description` is `Source.describe()` ("tcp 192.168.1.50:502", "serial /dev/ttyUSB0",
    "simulator (1 gateway(s) × 135 optimizers, 3:00:00)", "capture /path", "raw /path").
    """
    return description.split(" ", 1)[0] if description else "unknown"


def optimizer_fields(
    voltage_in_raw: int,
    voltage_out_raw: int,
    duty_cycle_raw: int,
    current_in_raw: int,
    temperature_raw: int,
    rssi: int,
) -> str:
    """The field set, from the raw wire integers (the conversions of `PowerReport`'s properties).

    Each value is one division of integers, so its float is exact-then-rounded and `repr` (the
    shortest text that reads back the same) is reproducible; every field stays a float field.
    """
    return (
        f"{VOLTAGE_IN[voltage_in_raw]}{VOLTAGE_OUT[voltage_out_raw]}{CURRENT_IN[current_in_raw]}"
        f"{current_out_text(current_in_raw, duty_cycle_raw)}{power_text(voltage_in_raw, current_in_raw)}"
        f"{DUTY_CYCLE[duty_cycle_raw]}{TEMPERATURE[temperature_raw + 0x800]}rssi={rssi}i"
    )


def report_values(report: PowerReport) -> tuple[int, int, int, int, int, int]:
    """The raw integers `optimizer_fields` takes, in its order."""
    return (
        report.voltage_in_raw,
        report.voltage_out_raw,
        report.duty_cycle_raw,
        report.current_in_raw,
        report.temperature_raw,
        report.rssi,
    )


def optimizer_line(identity: PointIdentity, report: PowerReport, measured_at: datetime) -> str:
    fields = optimizer_fields(*report_values(report))
    return f"{optimizer_tags(identity)} {fields} {to_millis(measured_at)}"


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
