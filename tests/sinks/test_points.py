from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.protocol import units
from recorder.reading import Reading
from recorder.sinks import points
from recorder.sinks.points import (
    ENERGY_FIELD_KEYS,
    ENERGY_MEASUREMENT,
    OPTIMIZER_FIELD_KEYS,
    OPTIMIZER_MEASUREMENT,
    RECORDER_MEASUREMENT,
    TAG_KEYS,
    PointFormatter,
    PointIdentity,
    current_out_text,
    energy_line,
    escape_tag,
    optimizer_line,
    optimizer_tags,
    power_text,
    recorder_line,
)
from recorder.timestamps import to_millis
from tests.helpers import T0

T0_MS = to_millis(T0)
# NOTES 3 values: Vin 905, Vout 450, duty 255, Iin 1233, 23.0 °C, slot 0xDF40, RSSI 178
READING: Reading = (0x1201, 116, T0_MS, T0_MS + 20_000, 0xDF40, 905, 450, 255, 1233, 230, 178, None)


def reading(**changes: int) -> Reading:
    names = ("voltage_in", "voltage_out", "duty_cycle", "current_in", "temperature", "rssi")
    values = list(READING)
    for name, value in changes.items():
        values[5 + names.index(name)] = value
    return tuple(values)  # type: ignore[return-value]


def test_optimizer_line_protocol() -> None:
    identity = PointIdentity(
        gateway="3-2BE16Y", node_id=116, barcode="4-9A57A2L", name="east 3", string="A,1"
    )
    line = optimizer_line(identity, READING)
    assert line == (
        "tigo_optimizer,barcode=4-9A57A2L,gateway=3-2BE16Y,name=east\\ 3,node_id=116,string=A\\,1 "
        "voltage_in=45.25,voltage_out=45.0,current_in=6.165,current_out=6.165,power=278.97,"
        "duty_cycle=1.0,temperature=23.0,rssi=178i 1750507200000"
    )


def test_unresolved_reading_has_no_barcode_tag_and_zero_duty_has_no_output_current() -> None:
    line = optimizer_line(PointIdentity(gateway="4609", node_id=7), reading(duty_cycle=0))
    assert line.startswith("tigo_optimizer,gateway=4609,node_id=7 ")
    assert "current_out" not in line and "duty_cycle=0.0" in line


def test_fields_keep_their_types_for_round_numbers() -> None:
    line = optimizer_line(PointIdentity(gateway="g", node_id=1), reading(voltage_out=0))
    assert "voltage_out=0.0," in line  # a float field even when the value is whole


def test_tag_escaping_and_recorder_line() -> None:
    assert escape_tag("a b,c=d") == "a\\ b\\,c\\=d"
    line = recorder_line("tcp host:7160", {"frames": 10, "decode_stalled": False, "ratio": 0.5}, T0)
    assert line == "tigo_recorder,source=tcp decode_stalled=false,frames=10i,ratio=0.5 1750507200000"


def test_the_health_series_key_does_not_change_with_a_port_or_a_duration() -> None:
    """A dashboard's series must not split when the converter moves or a replay is longer."""

    def key(description: str) -> str:
        return recorder_line(description, {"frames": 1}, T0).split(" ", 1)[0]

    assert key("tcp 192.168.1.50:7160") == key("tcp 192.168.1.50:502") == key("tcp [fe80::1]:7160")
    assert key("simulator (1 gateway(s) × 135 optimizers, 3:00:00)") == key(
        "simulator (2 gateway(s) × 12 optimizers, 7 days, 0:00:00)"
    )
    assert key("serial /dev/ttyUSB0") == key("serial /dev/ttyUSB1") == "tigo_recorder,source=serial"
    assert len({key("tcp h:1"), key("serial /dev/x"), key("capture a.cap"), key("raw b.bin")}) == 4


def expected_fields(values: tuple[int, int, int, int, int, int]) -> str:
    """The field set written out from `recorder.protocol.units` (derived fields rounded to 0.01 W
    and 1 mA), with no table or cache."""
    voltage_in, voltage_out, duty_cycle, current_in, temperature, rssi = values
    current_out = units.current_out(current_in, duty_cycle)
    power = round(units.power(voltage_in, current_in), 2)
    return (
        f"voltage_in={units.voltage_in(voltage_in)!r},voltage_out={units.voltage_out(voltage_out)!r},"
        f"current_in={units.current_in(current_in)!r},"
        + ("" if current_out is None else f"current_out={round(current_out, 3)!r},")
        + f"power={power!r},duty_cycle={units.duty_cycle(duty_cycle)!r},"
        f"temperature={units.temperature(temperature)!r},rssi={rssi}i"
    )


_VALUES = st.tuples(
    st.integers(0, 0xFFF),
    st.integers(0, 0xFFF),
    st.integers(0, 0xFF),
    st.integers(0, 0xFFF),
    st.integers(-0x800, 0x7FF),
    st.integers(0, 0xFF),
)


@given(
    st.lists(_VALUES, min_size=1, max_size=8), st.sampled_from([None, b"\x04\xc0\x5b\x40\x00\x00\x00\x07"])
)
@settings(max_examples=300, deadline=None)
def test_cached_texts_are_the_texts_of_the_units(
    values: list[tuple[int, int, int, int, int, int]], address: bytes | None
) -> None:
    """Tables and caches change nothing: any raw values (negative temperatures, zero duty cycle)
    give the texts the unit conversions give, the first time and when they repeat."""
    formatter = PointFormatter(lambda gateway, node, long_address: PointIdentity(str(gateway), node))
    readings = [(4609, 7, T0_MS + n, T0_MS, 0, *v, address) for n, v in enumerate(values)]
    lines = formatter.lines(readings) + formatter.lines(readings)  # fresh, then from the caches
    expected = [
        f"tigo_optimizer,gateway=4609,node_id=7 {expected_fields(v)} {T0_MS + n}"
        for n, v in enumerate(values)
    ]
    assert lines == expected + expected


def test_the_text_caches_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(points, "TEXT_CACHE_SIZE", 8)
    formatter = PointFormatter(lambda gateway, node, long_address: PointIdentity(str(gateway), node))
    readings = [
        (4609, 7, T0_MS, T0_MS, 0, 600 + n, 300, 100 + n, 900 + n, 250, 150, None) for n in range(100)
    ]
    for start in range(0, 100, 5):
        formatter.lines(readings[start : start + 5])
        assert len(formatter.power_texts) <= 8 + 5 and len(formatter.current_out_texts) <= 8 + 5


def test_tags_follow_the_address_and_are_forgotten_on_request() -> None:
    labels = {"name": "east 1"}
    formatter = PointFormatter(
        lambda gateway, node, long_address: PointIdentity(
            str(gateway), node, name=labels["name"] if long_address else None
        )
    )
    address = b"\x04\xc0\x5b\x40\x00\x00\x00\x07"
    known = (*READING[:11], address)
    assert ",name=" not in formatter.lines([READING])[0]  # address not known (yet)
    assert ",name=east\\ 1," in formatter.lines([known])[0]
    labels["name"] = "west 1"
    assert ",name=east\\ 1," in formatter.lines([known])[0]  # cached until told
    formatter.forget_tags()
    assert ",name=west\\ 1," in formatter.lines([known])[0]


def test_unresolved_readings_can_be_set_aside() -> None:
    formatter = PointFormatter(lambda gateway, node, long_address: PointIdentity(str(gateway), node))
    known = (*READING[:11], b"\x04\xc0\x5b\x40\x00\x00\x00\x07")
    aside: list[Reading] = []
    assert len(formatter.lines([READING, known, READING], aside)) == 1
    assert aside == [READING, READING]


def test_derived_values_are_rounded_to_a_sensible_resolution() -> None:
    """power to 0.01 W, current_out to 1 mA; measured values keep their wire steps."""
    bucking = reading(duty_cycle=194)  # duty 0.761: Iin / duty = 8.10348 A
    line = optimizer_line(PointIdentity(gateway="g", node_id=1), bucking)
    fields = dict(field.split("=") for field in line.split(" ")[1].split(","))
    assert fields["current_out"] == "8.103" and fields["power"] == "278.97"
    assert fields["current_in"] == "6.165" and fields["voltage_in"] == "45.25"
    for voltage_in in range(0, 0x1000, 37):
        for current_in in range(0, 0x1000, 41):
            power = float(power_text(voltage_in, current_in).split("=")[1].rstrip(","))
            assert abs(power - voltage_in * 0.05 * current_in * 0.005) <= 0.005 + 1e-9
            assert len(repr(power).split(".")[1]) <= 2
            for duty in (1, 97, 255):
                text = current_out_text(current_in, duty).split("=")[1].rstrip(",")
                assert len(text.split(".")[1]) <= 3
                assert abs(float(text) - current_in * 0.005 / (duty / 255)) <= 0.0005 + 1e-9


def _keys(line: str) -> tuple[list[str], list[str]]:
    """Tag keys and field keys of a line (values here hold no escaped spaces or commas)."""
    series, fields, _time = line.split(" ")
    return [tag.split("=")[0] for tag in series.split(",")[1:]], [f.split("=")[0] for f in fields.split(",")]


def test_site_is_a_tag_of_every_point_in_sorted_place() -> None:
    identity = PointIdentity(
        gateway="4609", node_id=116, barcode="4-9A57A2L", name="e3", string="A1", site="farm-north"
    )
    line = optimizer_line(identity, READING)
    assert line.startswith(
        "tigo_optimizer,barcode=4-9A57A2L,gateway=4609,name=e3,node_id=116,site=farm-north,string=A1 "
    )
    assert recorder_line("sim", {"frames": 1}, T0, "farm north") == (
        "tigo_recorder,site=farm\\ north,source=sim frames=1i 1750507200000"
    )
    assert recorder_line("sim", {"frames": 1}, T0) == "tigo_recorder,source=sim frames=1i 1750507200000"


def test_schema_keys_follow_the_rules_every_engine_shares() -> None:
    # InfluxDB 3 refuses a write whose tag and field share a name; `time` and names starting with
    # `_` are reserved everywhere; plain lower-case names need no quoting in InfluxQL or SQL.
    identity = PointIdentity(gateway="4609", node_id=1, barcode="4-9A57A2L", name="n", string="s", site="x")
    tags, fields = _keys(optimizer_line(identity, READING))
    assert tags == sorted(TAG_KEYS[OPTIMIZER_MEASUREMENT]) and fields == list(OPTIMIZER_FIELD_KEYS)
    health_tags, _ = _keys(recorder_line("sim", {"frames": 1}, T0, "x"))
    assert health_tags == sorted(TAG_KEYS[RECORDER_MEASUREMENT])
    energy_tags, energy_fields = _keys(energy_line(identity, 0, 1.0, 2))
    assert energy_tags == sorted(TAG_KEYS[ENERGY_MEASUREMENT]) and energy_fields == list(ENERGY_FIELD_KEYS)
    for measurement, keys in TAG_KEYS.items():
        field_keys = {OPTIMIZER_MEASUREMENT: OPTIMIZER_FIELD_KEYS, ENERGY_MEASUREMENT: ENERGY_FIELD_KEYS}.get(
            measurement, ()
        )
        assert not set(keys) & set(field_keys)
        for key in (*keys, *field_keys, measurement):
            assert re.fullmatch(r"[a-z][a-z0-9_]*", key) and key != "time", key


def test_a_label_cannot_break_the_line_protocol() -> None:
    assert escape_tag("a b,c=d") == "a\\ b\\,c\\=d"
    # A trailing backslash (or one before an escaped character) would swallow the delimiter.
    assert escape_tag("roof\\") == "roof/"
    assert escape_tag("a\\,b") == "a/\\,b"
    assert escape_tag("C:\\panels\\east") == "C:\\panels\\east"  # harmless inside a value
    line = optimizer_line(PointIdentity(gateway="g", node_id=1, name="east\\", string="A\\ 1"), READING)
    assert ",name=east/,node_id=1,string=A/\\ 1 " in line


def test_energy_line_has_the_optimizer_tags_and_the_days_midnight() -> None:
    identity = PointIdentity(gateway="4609", node_id=116, barcode="4-9A57A2L", name="east 3", string="A1")
    line = energy_line(identity, 1750456800000, 1234.5, 61)
    assert line == (
        "tigo_energy,barcode=4-9A57A2L,gateway=4609,name=east\\ 3,node_id=116,string=A1 "
        "energy_wh=1234.5,uncovered_seconds=61i 1750456800000"
    )
    assert line.split(" energy_wh")[0] == optimizer_tags(identity, "tigo_energy")
    assert energy_line(PointIdentity(gateway="4609", node_id=7), 0, 0, 0) == (
        "tigo_energy,gateway=4609,node_id=7 energy_wh=0.0,uncovered_seconds=0i 0"
    )
