from __future__ import annotations

from recorder.protocol.events import PowerReport
from recorder.sinks.points import (
    PointIdentity,
    energy_line,
    escape_tag,
    optimizer_line,
    optimizer_tags,
    recorder_line,
)
from tests.helpers import T0

REPORT = PowerReport(905, 450, 255, 1233, 230, b"\x92\x00\x64", 0xDF40, 178)  # NOTES 3 values


def test_optimizer_line_protocol() -> None:
    identity = PointIdentity(
        gateway="3-2BE16Y", node_id=116, barcode="4-9A57A2L", name="east 3", string="A,1"
    )
    line = optimizer_line(identity, REPORT, T0)
    assert line == (
        "tigo_optimizer,barcode=4-9A57A2L,gateway=3-2BE16Y,name=east\\ 3,node_id=116,string=A\\,1 "
        "voltage_in=45.25,voltage_out=45.0,current_in=6.165,current_out=6.165,power=278.96625,"
        "duty_cycle=1.0,temperature=23.0,rssi=178i 1750507200000"
    )


def test_unresolved_reading_has_no_barcode_tag_and_zero_duty_has_no_output_current() -> None:
    line = optimizer_line(PointIdentity(gateway="4609", node_id=7), REPORT._replace(duty_cycle_raw=0), T0)
    assert line.startswith("tigo_optimizer,gateway=4609,node_id=7 ")
    assert "current_out" not in line and "duty_cycle=0.0" in line


def test_the_same_reading_always_gives_the_same_line() -> None:
    identity = PointIdentity(gateway="3-2BE16Y", node_id=116, barcode="4-9A57A2L")
    assert optimizer_line(identity, REPORT, T0) == optimizer_line(
        identity, REPORT._replace(unknown=b"xyz"), T0
    )


def test_fields_keep_their_types_for_round_numbers() -> None:
    line = optimizer_line(PointIdentity(gateway="g", node_id=1), REPORT._replace(voltage_out_raw=0), T0)
    assert "voltage_out=0.0," in line  # a float field even when the value is whole


def test_tag_escaping_and_recorder_line() -> None:
    assert escape_tag("a b,c=d") == "a\\ b\\,c\\=d"
    line = recorder_line("tcp host:7160", {"frames": 10, "decode_stalled": False, "ratio": 0.5}, T0)
    assert (
        line == "tigo_recorder,source=tcp\\ host:7160 decode_stalled=false,frames=10i,ratio=0.5 1750507200000"
    )


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
