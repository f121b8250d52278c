"""The simulator's traffic decodes to exactly its ground truth (issue "Bus simulator")."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import serial

from recorder.observer import NodeTableAssembled
from recorder.pipeline import DecodePipeline
from recorder.protocol.barcode import barcode_from_address
from recorder.protocol.events import NodeTablePage
from recorder.reading import ReadingFields
from recorder.sim.bus import BusSimulation
from recorder.sim.config import SimulationConfig
from recorder.sim.truth import compare, load_truth
from recorder.sinks.jsonl import reading_json
from recorder.timestamps import to_millis
from tests.conftest import ROOT, run_recorder


def observe_lines(capture: Path) -> list[dict[str, Any]]:
    completed = run_recorder("observe", "--source", f"capture:{capture}")
    return [json.loads(line) for line in completed.stdout.splitlines()]


def simulate_in_process(
    config: SimulationConfig,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    truth: list[dict[str, Any]] = []
    pipeline = DecodePipeline()
    decoded: list[dict[str, Any]] = []
    for data, seconds in BusSimulation(config).run(truth.append):
        readings = pipeline.feed(data, config.start + timedelta(seconds=seconds)).readings
        decoded.extend(reading_json(reading) for reading in readings)
    return truth, decoded, pipeline.counters.as_dict()


def assert_accounted(result: Any, counters: dict[str, int]) -> None:
    assert result.exact, result.summary()
    assert result.max_time_error < 1.0
    assert result.matched + result.destroyed == result.expected
    # Every destroyed report sat in a damaged frame (at most three reports per response), and
    # the link layer counted every damaged frame it saw.
    damaged = sum(
        counters[name] for name in ("checksum_errors", "truncated_frames", "invalid_escapes", "runts")
    )
    assert damaged * 3 >= result.destroyed


@pytest.mark.slow
def test_one_day_one_gateway_with_noise_through_recorder_observe(tmp_path: Path) -> None:
    capture, truth_file = tmp_path / "day.cap.gz", tmp_path / "truth.jsonl"
    run_recorder(
        "simulate",
        "--duration",
        "24h",
        "--start",
        "2025-06-21T00:00:00+00:00",
        "--nodes",
        "135",
        "--noise",
        "0.01",
        "--seed",
        "3",
        "--out",
        str(capture),
        "--truth",
        str(truth_file),
    )
    lines = observe_lines(capture)
    counters = lines[-1]
    assert counters["type"] == "counters"
    reports = [line for line in lines if line["type"] == "power_report"]
    result = compare(load_truth(truth_file), reports)
    assert result.expected > 300_000 and result.destroyed > 0
    assert_accounted(result, counters)


@pytest.mark.slow
@pytest.mark.parametrize(
    "changes",
    [{"gateways": 2, "noise": 0.01}, {"firmware": "4x", "noise": 0.01}],
    ids=["two gateways", "firmware 4x"],
)
def test_other_configurations_decode_exactly(changes: dict[str, Any]) -> None:
    config = SimulationConfig(
        start=datetime(2025, 6, 21, 8, tzinfo=UTC), duration=timedelta(hours=3), seed=5, **changes
    )
    truth, decoded, counters = simulate_in_process(config)
    result = compare(truth, decoded)
    assert result.destroyed > 0
    assert_accounted(result, counters)
    if changes.get("gateways") == 2:
        assert {line["gateway_id"] for line in decoded} == {0x1201, 0x1202}
    else:
        assert counters["invalid_receive_responses"] == 0


def test_same_seed_same_bytes_different_seed_different_bytes() -> None:
    config = SimulationConfig(duration=timedelta(minutes=5), nodes=20)
    first = b"".join(data for data, _ in BusSimulation(config).run())
    again = b"".join(data for data, _ in BusSimulation(config).run())
    other = b"".join(data for data, _ in BusSimulation(config.with_changes(seed=2)).run())
    assert first == again and first != other


def test_truth_says_when_each_report_first_reached_the_listener() -> None:
    """`reached_listener_at` is the end of the first intact copy on the wire: exactly when a
    listener fed the simulator's chunks decodes the report (the soak blames a lost report on
    a power cut by it). Some reports reach the bus more than 30 s after their measurement."""
    config = SimulationConfig(duration=timedelta(minutes=10), nodes=40, noise=0.02)
    truth: list[dict[str, Any]] = []
    pipeline = DecodePipeline()
    readings: list[ReadingFields] = []
    for data, seconds in BusSimulation(config).run(truth.append):
        decoded = pipeline.feed(data, config.start + timedelta(seconds=seconds))
        readings.extend(map(ReadingFields._make, decoded.readings))
    reports: dict[tuple[int, int, int], list[dict[str, Any]]] = {}
    for record in truth:
        if record["type"] == "power_report" and not record["destroyed"]:
            reports.setdefault((record["gateway_id"], record["node_id"], record["slot_counter"]), []).append(
                record
            )
    delays = []
    for reading in readings:
        (record,) = [  # the same counter comes round again every ~240 s
            record
            for record in reports[(reading.gateway_id, reading.node_id, reading.slot_counter)]
            if abs(to_millis(datetime.fromisoformat(record["measured_at"])) - reading.measured_ms) < 3000
        ]
        arrived = datetime.fromisoformat(record["reached_listener_at"])
        assert abs(reading.received_ms - to_millis(arrived)) <= 1, record
        delays.append((arrived - datetime.fromisoformat(record["measured_at"])).total_seconds())
    assert len(readings) == sum(map(len, reports.values())) > 500
    assert min(delays) > 0 and max(delays) > 30


def test_barcodes_from_topology_reports_within_minutes_of_sunrise() -> None:
    # No controller start: the only identity traffic at dawn is nodes joining the mesh.
    config = SimulationConfig(
        start=datetime(2025, 6, 21, 3, 0, tzinfo=UTC),
        duration=timedelta(hours=2),
        nodes=40,
        controller_restart=False,
        seed=7,
    )
    truth, decoded, _ = simulate_in_process(config)
    first_report: dict[int, datetime] = {}
    first_resolved: dict[int, datetime] = {}
    for line in decoded:
        at = datetime.fromisoformat(line["measured_at"])
        first_report.setdefault(line["node_id"], at)
        if line["barcode"]:
            first_resolved.setdefault(line["node_id"], at)
    assert len(first_report) == 40
    sunrise = min(first_report.values())
    assert sunrise > config.start + timedelta(minutes=30)  # it really was dark at the start
    for node_id, at in first_report.items():
        assert first_resolved[node_id] - at <= timedelta(minutes=2)
    assert max(first_resolved.values()) - sunrise < timedelta(minutes=10)
    result = compare(truth, [line for line in decoded if line["barcode"]], check_barcodes=True)
    assert not result.barcode_mismatches


def test_node_table_at_night_resolves_every_node(tmp_path: Path) -> None:
    # Evening, no controller start: sunset ~20:00 local, the nightly table ~2 h later.
    capture = tmp_path / "night.cap.gz"
    truth_file = tmp_path / "truth.jsonl"
    run_recorder(
        "simulate",
        "--start",
        "2025-06-21T21:00:00+00:00",
        "--duration",
        "2h",
        "--nodes",
        "30",
        "--no-controller-restart",
        "--out",
        str(capture),
        "--truth",
        str(truth_file),
    )
    lines = observe_lines(capture)
    tables = [line for line in lines if line["type"] == "node_table"]
    assert len(tables) == 1
    expected = {(r["node_id"], r["barcode"]) for r in load_truth(truth_file) if r["type"] == "mapping"}
    assert {(node["node_id"], node["barcode"]) for node in tables[0]["nodes"]} == expected
    assert not [line for line in lines if line["type"] == "power_report"]  # it is night


def test_reassignment_moves_readings_to_the_new_barcode() -> None:
    config = SimulationConfig(
        start=datetime(2025, 6, 21, 10, tzinfo=UTC),
        duration=timedelta(hours=2),
        nodes=30,
        reassign=True,
        seed=11,
    )
    truth, decoded, counters = simulate_in_process(config)
    changes = [r for r in truth if r["type"] == "mapping" and r["valid_from"] != truth[1]["valid_from"]]
    assert len(changes) == 2 and changes[1]["node_id"] == changes[0]["node_id"] | 0x8000  # bit-15 alias
    node_id, new_barcode = changes[0]["node_id"], changes[0]["barcode"]
    changed_at = datetime.fromisoformat(changes[0]["valid_from"])
    old_barcode = next(r["barcode"] for r in truth if r["type"] == "mapping" and r["node_id"] == node_id)
    assert old_barcode != new_barcode
    assert compare(truth, decoded).exact
    resolved = [line for line in decoded if line["barcode"]]
    result = compare(truth, resolved, check_barcodes=True)
    assert not result.barcode_mismatches, result.summary()
    assert len(resolved) > 0.99 * len(decoded)  # only the first seconds, before the node table
    mine = [line for line in decoded if line["node_id"] == node_id and line["barcode"]]
    before = {line["barcode"] for line in mine if datetime.fromisoformat(line["measured_at"]) < changed_at}
    after = {line["barcode"] for line in mine if datetime.fromisoformat(line["measured_at"]) >= changed_at}
    assert before == {old_barcode} and after == {new_barcode}
    assert counters["mapping_changes"] >= 1


def test_a_replacement_announced_in_a_table_paged_aliases_last_retags_every_later_reading() -> None:
    """The gateway lists 0x80NN after its page's plain IDs and the controller continues from the
    plain ID; the replacement sends no topology report, so that table is the only news of it."""
    config = SimulationConfig(
        start=datetime(2025, 6, 21, 10, tzinfo=UTC),
        duration=timedelta(hours=1),
        nodes=9,  # node IDs 2-10: one page, which then ends with the alias
        reassign=True,
        aliases_last=True,
        quiet_replacement=True,
        seed=5,
    )
    truth: list[dict[str, Any]] = []
    pipeline = DecodePipeline()
    readings: list[ReadingFields] = []
    pages: list[NodeTablePage] = []
    tables: list[NodeTableAssembled] = []
    for data, seconds in BusSimulation(config).run(truth.append):
        events, decoded, learned = pipeline.feed(data, config.start + timedelta(seconds=seconds))
        pages += [event for event in events if isinstance(event, NodeTablePage)]
        readings += [ReadingFields._make(reading) for reading in decoded]
        tables += [output for output in learned if isinstance(output, NodeTableAssembled)]
    alias, plain = [r for r in truth if r["type"] == "mapping" and r["valid_from"] != truth[1]["valid_from"]][
        ::-1
    ]
    assert alias["node_id"] == plain["node_id"] | 0x8000
    # The traffic is the one the issue describes: a page ending with the alias, then a request
    # for the plain ID after the page's highest.
    after_alias = [
        later
        for page, later in pairwise(pages)
        if page.entries[-1:] and page.entries[-1].node_id == alias["node_id"]
    ]
    assert after_alias and all(later.requested_index == 11 for later in after_alias)
    changed_at = datetime.fromisoformat(plain["valid_from"])
    read_at = next(page.received_at for page in pages if page.is_end and page.received_at > changed_at)
    mine = [r for r in readings if r.node_id == plain["node_id"] and r.measured_ms >= to_millis(read_at)]
    assert len(mine) > 50
    assert {barcode_from_address(r.long_address) for r in mine if r.long_address} == {plain["barcode"]}
    assert all(r.long_address for r in mine)  # every one, from the first on
    table = next(table for table in tables if table.completed_at == read_at)
    assert any(entry.node_id == alias["node_id"] for entry in table.entries)
    assert pipeline.counters.observer.incomplete_node_tables == 0


def _start_simulator(*arguments: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "recorder.cli.app", "simulate", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    first_line = process.stdout.readline().strip()
    assert first_line, process.stderr.read() if process.stderr else ""
    return process, first_line


SMALL = ("--duration", "10m", "--nodes", "20", "--seed", "9", "--noise", "0.005")


def test_tcp_server_and_pty_carry_the_same_bytes_as_the_files(tmp_path: Path) -> None:
    raw = tmp_path / "bus.bin"
    run_recorder("simulate", *SMALL, "--raw", str(raw))
    expected = raw.read_bytes()

    process, line = _start_simulator(*SMALL, "--listen", "tcp://127.0.0.1:0", "--speed", "max")
    try:
        port = int(line.rsplit(":", 1)[1])
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        received = []
        for client in clients:
            chunks = []
            while chunk := client.recv(65536):
                chunks.append(chunk)
            received.append(b"".join(chunks))
            client.close()
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
    assert received[0] == expected
    # The second client connected a moment later and joined the live stream.
    assert received[1] and expected.endswith(received[1])

    process, device = _start_simulator(*SMALL, "--pty", "--speed", "max")
    try:
        port_handle = serial.Serial(device, 38400, timeout=2)
        chunks = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                chunk = port_handle.read(65536)
            except serial.SerialException:
                break  # the simulator closed the pseudo-terminal
            if not chunk and process.poll() is not None:
                break
            chunks.append(chunk)
        port_handle.close()
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
    assert b"".join(chunks) == expected


def test_simulate_requires_an_output() -> None:
    completed = run_recorder("simulate", "--duration", "1m", check=False)
    assert completed.returncode == 2
    assert (
        "choose at least one output" in completed.stderr and len(completed.stderr.strip().splitlines()) == 1
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--duration", "soon"), "is not a duration"),
        (("--firmware", "5x"), "is not one of legacy, 4x"),
        (("--start", "yesterday"), "is not an ISO-8601 time"),
        (("--noise", "2"), "expected a probability"),
    ],
)
def test_bad_simulator_options_are_one_clear_line(
    tmp_path: Path, arguments: tuple[str, ...], message: str
) -> None:
    completed = run_recorder("simulate", "--out", str(tmp_path / "x.cap.gz"), *arguments, check=False)
    assert completed.returncode == 2
    assert message in completed.stderr and len(completed.stderr.strip().splitlines()) == 1
