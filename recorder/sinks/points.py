"""Readings and health as InfluxDB line protocol (pure functions, no IO).

Measurement `tigo_optimizer`, one point per reading:

    tags    barcode (when known), gateway (the gateway ID, e.g. 4609), node_id,
            name and string (the user's labels, when set)

(The gateway tag is the numeric ID rather than the TAP's barcode: the barcode is only heard when
the controller enumerates its gateways, perhaps months after the recorder starts, and a tag that
changes value would split every series.)
    fields  voltage_in V, voltage_out V, current_in A, current_out A (omitted when the duty cycle
            is 0), power W (= voltage_in × current_in), duty_cycle 0..1, temperature °C,
            rssi (raw, integer)
    time    the measurement time, in milliseconds

The same reading always produces the same series key and timestamp, so writing it twice
leaves one point in InfluxDB. Values come from the raw wire integers with the same conversions
the decoder uses.

Measurement `tigo_energy`, one point per optimizer and local day (`recorder.energy`): the same
tags as `tigo_optimizer` (built by the same function), fields `energy_wh` (float) and
`uncovered_seconds` (integer), time = the day's local midnight; rewritten during the day, so the
point holds the day's latest total.

Measurement `tigo_recorder`, the recorder's own health: integer counters and gauges.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from recorder.protocol.events import PowerReport
from recorder.timestamps import to_millis

OPTIMIZER_MEASUREMENT = "tigo_optimizer"
ENERGY_MEASUREMENT = "tigo_energy"
RECORDER_MEASUREMENT = "tigo_recorder"

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": " ", "\r": " "})


def escape_tag(value: str) -> str:
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
    if duty_cycle_raw:
        current_out = f"current_out={current_in_raw * 255 / (200 * duty_cycle_raw)!r},"
    else:
        current_out = ""  # no output current without a duty cycle
    return (
        f"{VOLTAGE_IN[voltage_in_raw]}{VOLTAGE_OUT[voltage_out_raw]}{CURRENT_IN[current_in_raw]}{current_out}"
        f"power={voltage_in_raw * current_in_raw / 4000!r},{DUTY_CYCLE[duty_cycle_raw]}"
        f"{TEMPERATURE[temperature_raw + 0x800]}rssi={rssi}i"
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


def recorder_line(source: str, values: dict[str, int | float | bool], at: datetime) -> str:
    fields = []
    for name, value in sorted(values.items()):
        if isinstance(value, bool):
            fields.append(f"{name}={'true' if value else 'false'}")
        elif isinstance(value, int):
            fields.append(f"{name}={value}i")
        else:
            fields.append(f"{name}={_number(value)}")
    return f"{RECORDER_MEASUREMENT},source={escape_tag(source)} {','.join(fields)} {to_millis(at)}"
