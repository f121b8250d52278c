"""Readings and health as InfluxDB line protocol (pure functions, no IO).

Measurement `tigo_optimizer`, one point per reading:

    tags    barcode (when known), gateway (gateway barcode, else its ID), node_id,
            name and string (the user's labels, when set)
    fields  voltage_in V, voltage_out V, current_in A, current_out A (omitted when the duty cycle
            is 0), power W (= voltage_in × current_in), duty_cycle 0..1, temperature °C,
            rssi (raw, integer)
    time    the measurement time, in milliseconds

The same reading always produces the same series key and timestamp, so writing it twice
leaves one point in InfluxDB. Values come from the raw wire integers with the same conversions
the decoder uses.

Measurement `tigo_recorder`, the recorder's own health: integer counters and gauges.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from recorder.protocol.events import PowerReport
from recorder.storage.models import to_millis

OPTIMIZER_MEASUREMENT = "tigo_optimizer"
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


def optimizer_line(identity: PointIdentity, report: PowerReport, measured_at: datetime) -> str:
    tags = [OPTIMIZER_MEASUREMENT]
    if identity.barcode:
        tags.append(f"barcode={escape_tag(identity.barcode)}")
    tags.append(f"gateway={escape_tag(identity.gateway)}")
    if identity.name:
        tags.append(f"name={escape_tag(identity.name)}")
    tags.append(f"node_id={identity.node_id}")
    if identity.string:
        tags.append(f"string={escape_tag(identity.string)}")
    fields = [
        f"voltage_in={_number(report.voltage_in)}",
        f"voltage_out={_number(report.voltage_out)}",
        f"current_in={_number(report.current_in)}",
    ]
    current_out = report.current_out
    if current_out is not None:
        fields.append(f"current_out={_number(current_out)}")
    fields += [
        f"power={_number(report.power)}",
        f"duty_cycle={_number(report.duty_cycle)}",
        f"temperature={_number(report.temperature)}",
        f"rssi={report.rssi}i",
    ]
    return f"{','.join(tags)} {','.join(fields)} {to_millis(measured_at)}"


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
