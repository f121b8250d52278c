"""`observe`, `run` and `backfill` make the same readings of the same bytes (issue 14).

Each scenario is a capture file: simulated traffic (noise, firmware 4.x, two gateways, a
replacement), or a quiet simulation followed by traffic the simulator does not make
(retransmissions the transport cannot catch, reports from bit-15 alias IDs, a receive response
with an impossible gateway slot counter). The three commands run as a user runs them, `run`
and `backfill` into a real InfluxDB, and must agree on:

* the readings: gateway, node, measurement time and values, one for one;
* the barcodes: `run` and `backfill` the same for every reading (both wait for a node's
  identity); `observe` prints a reading at once, so its barcode is the same where the node was
  already known and null where it was not yet;
* the counters of what was dropped, and why;
* the node activity `recorder nodes list` shows (first and last report, count), in `run`'s and
  `backfill`'s state databases.

Power is compared at the 0.01 W the points carry (`observe` prints it unrounded).

A reading whose node is never identified stays in `run`'s outbox (its identity hold lasts 36 h)
while `backfill` writes it without a barcode when its input ends: those are the same readings.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from recorder.capture import CaptureWriter
from recorder.protocol import encode, units
from recorder.protocol.barcode import barcode_from_address
from recorder.protocol.events import NodeTableEntry, PowerReport
from recorder.protocol.pv import application as app
from recorder.protocol.slots import add_slots
from recorder.sim.bus import BusSimulation
from recorder.sim.config import SimulationConfig
from recorder.timestamps import to_millis
from tests.conftest import run_recorder
from tests.influx import LocalInfluxDB

pytestmark = pytest.mark.influx

GATEWAY = 4609  # the simulator's first gateway (0x1201)
START = datetime(2025, 6, 21, 10, 0, tzinfo=UTC)
ALIAS_ADDRESS = bytes.fromhex("04C05B4000ABCDEF")
# The counters of power reports (or packets) that became no reading, and of what did.
DROPPED = (
    "invalid_power_reports",
    "unplaced_reports",
    "duplicate_reports",
    "retransmitted_packets",
    "truncated_packets",
)
COUNTED = (*DROPPED, "power_reports", "readings")


def report(slot_counter: int, voltage_in: int = 700, current_in: int = 900) -> bytes:
    return app.encode_power_report(
        PowerReport(voltage_in, 350, 240, current_in, 251, b"\x81\x00\x6e", slot_counter, 150)
    )


def poll(gateway_slot_counter: int, packets: list[bytes], number: int) -> bytes:
    return encode.receive_request(GATEWAY, number) + encode.receive_response(
        GATEWAY, 0x00EE, number, gateway_slot_counter, packets
    )


def node_table(sequence: int, entries: list[NodeTableEntry]) -> bytes:
    first = encode.command_request(
        GATEWAY, app.NODE_TABLE_REQUEST, sequence, app.encode_node_table_request(0)
    ) + encode.command_response(
        GATEWAY, app.NODE_TABLE_RESPONSE, sequence, app.encode_node_table_response(0, entries)
    )
    end = max(entry.node_id for entry in entries) + 1
    return (
        first
        + encode.command_request(
            GATEWAY, app.NODE_TABLE_REQUEST, sequence + 1, app.encode_node_table_request(end)
        )
        + encode.command_response(
            GATEWAY, app.NODE_TABLE_RESPONSE, sequence + 1, app.encode_node_table_response(end, [])
        )
    )


def retransmissions(at: datetime) -> Iterator[tuple[bytes, datetime]]:
    """A report the gateway sends again in the next response (the transport drops it), and again
    after another response with packets (only the placement step can tell it is a duplicate)."""
    gateway = 0x2000
    first = encode.packet(app.POWER_REPORT, 2, report(add_slots(gateway, -400)))
    second = encode.packet(app.POWER_REPORT, 3, report(add_slots(gateway, -300), 720))
    yield poll(gateway, [first], 0x10), at
    yield poll(add_slots(gateway, 60), [first, second], 0x10), at + timedelta(seconds=0.3)
    third = encode.packet(app.POWER_REPORT, 4, report(add_slots(gateway, 100), 730))
    yield poll(add_slots(gateway, 120), [third], 0x11), at + timedelta(seconds=0.6)
    yield poll(add_slots(gateway, 180), [first], 0x12), at + timedelta(seconds=0.9)


def aliases(at: datetime) -> Iterator[tuple[bytes, datetime]]:
    """Reports from a bit-15 alias ID before and after a node table names it."""
    gateway = 0x6000
    early = encode.packet(app.POWER_REPORT, 0x8002, report(add_slots(gateway, -500), 640))
    yield poll(gateway, [early], 0x20), at
    table = [NodeTableEntry(ALIAS_ADDRESS, 0x8002), NodeTableEntry(ALIAS_ADDRESS, 0x8005)]
    yield node_table(0x40, table), at + timedelta(seconds=2)
    later = add_slots(gateway, 1000)
    packets = [
        encode.packet(app.POWER_REPORT, 0x8002, report(add_slots(later, -200), 650)),
        encode.packet(app.POWER_REPORT, 0x8005, report(add_slots(later, -100), 660)),
    ]
    yield poll(later, packets, 0x21), at + timedelta(seconds=5)


def impossible_gateway_counter(at: datetime) -> Iterator[tuple[bytes, datetime]]:
    """A response whose own slot counter is impossible, between two good ones: its report is
    not placed (not against the response before it, 12 s earlier)."""
    gateway = 0x1000
    yield poll(gateway, [encode.packet(app.POWER_REPORT, 2, report(add_slots(gateway, -300)))], 0x30), at
    carried = encode.packet(app.POWER_REPORT, 3, report(add_slots(gateway, 2000), 710))
    yield poll(0x3FFF, [carried], 0x31), at + timedelta(seconds=12)
    after = add_slots(gateway, 2600)
    yield (
        poll(after, [encode.packet(app.POWER_REPORT, 4, report(add_slots(after, -100)))], 0x32),
        (at + timedelta(seconds=13)),
    )


SCENARIOS: dict[str, tuple[dict[str, Any], Any]] = {
    "noise": ({"noise": 0.03}, None),
    "firmware 4x": ({"firmware": "4x", "noise": 0.01}, None),
    "two gateways": ({"gateways": 2, "noise": 0.01}, None),
    "replacement": ({"reassign": True, "noise": 0.005}, None),
    # The replacement is only in the node table read after it, which lists aliases after each
    # page's plain IDs (`SimulationConfig.aliases_last`).
    "replacement in an alias-paged table": (
        {"reassign": True, "aliases_last": True, "quiet_replacement": True},
        None,
    ),
    "retransmissions": ({}, retransmissions),
    "bit-15 aliases": ({}, aliases),
    "impossible gateway slot counter": ({}, impossible_gateway_counter),
}


def write_capture(path: Path, changes: dict[str, Any], crafted: Any) -> None:
    config = SimulationConfig(start=START, duration=timedelta(minutes=30), nodes=10, seed=71)
    config = config.with_changes(**changes)
    last = START
    with path.open("wb") as stream:
        writer = CaptureWriter(stream)
        for data, seconds in BusSimulation(config).run():
            last = START + timedelta(seconds=seconds)
            writer.write(data, last)
        if crafted is not None:
            for data, at in crafted(last + timedelta(seconds=10)):
                writer.write(data, at)
        writer.close()


# A reading as all three commands show it: gateway, node, measurement ms, values with units.
Row = tuple[int, int, int, float, float, float, float, float, float, int]


def row(gateway: Any, node: Any, ms: int, fields: dict[str, Any]) -> Row:
    return (
        int(gateway),
        int(node),
        ms,
        fields["voltage_in"],
        fields["voltage_out"],
        fields["current_in"],
        round(fields["power"], 2),
        fields["duty_cycle"],
        fields["temperature"],
        int(fields["rssi"]),
    )


def influx_readings(server: LocalInfluxDB, database: str) -> Counter[tuple[Row, str | None]]:
    return Counter(
        (row(p["gateway"], p["node_id"], p["time"], p), p.get("barcode"))
        for p in server.query("SELECT * FROM tigo_optimizer", database)
    )


def held_readings(state: Path) -> Counter[tuple[Row, str | None]]:
    """Readings `run` keeps in its outbox, waiting for their node's barcode."""
    with sqlite3.connect(state) as connection:
        rows = connection.execute(
            "SELECT state, gateway_id, node_id, measured_at, voltage_in_raw, voltage_out_raw, "
            "duty_cycle_raw, current_in_raw, temperature_raw, rssi FROM outbox"
        ).fetchall()
    assert {r[0] for r in rows} <= {"held"}  # everything ready was written before exiting
    return Counter(
        (
            (
                gateway,
                node,
                ms,
                units.voltage_in(vin),
                units.voltage_out(vout),
                units.current_in(iin),
                round(units.power(vin, iin), 2),
                units.duty_cycle(duty),
                units.temperature(temperature),
                rssi,
            ),
            None,
        )
        for _, gateway, node, ms, vin, vout, duty, iin, temperature, rssi in rows
    )


def node_activity(state: Path) -> dict[tuple[int, int], tuple[int, int, int]]:
    with sqlite3.connect(state) as connection:
        rows = connection.execute(
            "SELECT gateway_id, node_id, first_report_at, last_report_at, report_count FROM node_activity"
        ).fetchall()
    return {(gateway, node): (first, last, count) for gateway, node, first, last, count in rows}


def run_health(state: Path) -> dict[str, Any]:
    with sqlite3.connect(state) as connection:
        (value,) = connection.execute("SELECT value FROM recorder_state WHERE key = 'health'").fetchone()
    health: dict[str, Any] = json.loads(value)
    return health


_NOT_WRITTEN = {
    "invalid": "invalid_power_reports",
    "unplaced (impossible gateway slot counter)": "unplaced_reports",
    "duplicates": "duplicate_reports",
    "retransmitted packets": "retransmitted_packets",
    "truncated packets": "truncated_packets",
}


def backfill_counters(summary: str) -> dict[str, int]:
    counters = dict.fromkeys(DROPPED, 0)
    counters["readings"] = int(re.search(r"(\d+) readings,", summary).group(1))  # type: ignore[union-attr]
    line = next((text for text in summary.splitlines() if "power reports not written" in text), "")
    for count, what in re.findall(r"(\d+) ([a-z][a-z ()]*?)(?:,|$)", line.split(":", 1)[-1]):
        counters[_NOT_WRITTEN[what.strip()]] = int(count)
    return counters


@pytest.fixture
def two_databases(influxdb: LocalInfluxDB) -> Iterator[tuple[LocalInfluxDB, str, str]]:
    influxdb.ensure_running()
    names = [f"paths_{kind}_{id(influxdb) % 10**6}_{n}" for n, kind in enumerate(("run", "backfill"))]
    for name in names:
        influxdb.drop_database(name)
        influxdb.create_database(name)
    yield influxdb, names[0], names[1]
    for name in names:
        influxdb.drop_database(name)


def environment(server: LocalInfluxDB, database: str) -> dict[str, str]:
    return {
        "INFLUX_URL": server.url,
        "INFLUX_TOKEN": "recorder:recorder",
        "INFLUX_ORG": "-",
        "INFLUX_BUCKET": database,
    }


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_observe_run_and_backfill_make_the_same_readings(
    scenario: str, two_databases: tuple[LocalInfluxDB, str, str], tmp_path: Path
) -> None:
    server, run_database, backfill_database = two_databases
    capture = tmp_path / "bus.cap.gz"
    write_capture(capture, *SCENARIOS[scenario])

    observed = run_recorder("observe", "--source", f"capture:{capture}")
    lines = [json.loads(line) for line in observed.stdout.splitlines()]
    observe_readings = Counter(
        (
            row(r["gateway_id"], r["node_id"], to_millis(datetime.fromisoformat(r["measured_at"])), r),
            r["barcode"],
        )
        for r in lines
        if r["type"] == "power_report"
    )
    observe_counters = next(r for r in lines if r["type"] == "counters")

    run_state = tmp_path / "run.db"
    run_recorder(
        "run", "--source", f"capture:{capture}", "--db", str(run_state), "--exit-at-end",
        env=environment(server, run_database),
    )  # fmt: skip
    run_readings = influx_readings(server, run_database) + held_readings(run_state)
    run_counters = run_health(run_state)

    backfill_state = tmp_path / "backfill.db"
    backfilled = run_recorder(
        "backfill", str(capture), "--db", str(backfill_state), env=environment(server, backfill_database)
    )
    backfill_readings = influx_readings(server, backfill_database)

    # The same readings, one for one...
    assert len(backfill_readings) > 500
    assert max(backfill_readings.values()) == 1 and max(run_readings.values()) == 1
    readings = sorted(r for r, _ in backfill_readings)
    assert sorted(r for r, _ in run_readings) == readings
    assert sorted(r for r, _ in observe_readings) == readings
    # ... with the same barcodes (`observe` cannot wait for one: null until the node is known).
    assert run_readings == backfill_readings
    barcodes = dict(backfill_readings.keys())
    assert all(barcode in (None, barcodes[r]) for r, barcode in observe_readings)
    assert sum(1 for _, barcode in observe_readings if barcode) > len(readings) / 2
    # ... and the same account of what was dropped.
    expected = {name: observe_counters[name] for name in COUNTED}
    assert {name: run_counters[name] for name in COUNTED} == expected
    backfill_dropped = backfill_counters(backfilled.stdout)
    assert backfill_dropped == {name: expected[name] for name in (*DROPPED, "readings")}
    assert expected["readings"] == len(readings)
    assert expected["readings"] + sum(expected[name] for name in DROPPED[:3]) == expected["power_reports"]
    # ... and the same node activity (what `nodes list` shows as LAST REPORT and REPORTS).
    activity = node_activity(backfill_state)
    assert node_activity(run_state) == activity
    assert sum(count for _, _, count in activity.values()) == len(readings)

    # What each scenario is about happened.
    if scenario == "noise":
        assert observe_counters["checksum_errors"] > 0
    elif scenario == "retransmissions":
        assert expected["retransmitted_packets"] >= 1 and expected["duplicate_reports"] >= 1
    elif scenario == "bit-15 aliases":
        alias = [(r, b) for r, b in backfill_readings if r[1] & 0x8000]
        assert len(alias) == 3 and {b for _, b in alias} == {barcode_from_address(ALIAS_ADDRESS)}
        early = min(alias)[0]
        assert (early, None) in observe_readings  # observe printed it before the table named it
    elif scenario == "impossible gateway slot counter":
        assert expected["unplaced_reports"] == 1
        assert not any(r[3] == units.voltage_in(710) for r in readings)
    elif scenario.startswith("replacement"):
        assert observe_counters["mapping_changes"] >= 1
