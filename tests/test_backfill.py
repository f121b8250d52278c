"""`recorder backfill` against a real InfluxDB (issue "recorder backfill")."""

from __future__ import annotations

import gzip
import json
import random
import threading
import urllib.error
import urllib.request
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from recorder.archive import Archive
from recorder.capture import write_capture
from recorder.protocol.barcode import address_from_barcode, format_long_address
from recorder.sim.bus import BusSimulation
from recorder.sim.config import SimulationConfig
from recorder.sim.truth import compare_points, power_reports
from tests.conftest import run_recorder
from tests.influx import InfluxDatabase

pytestmark = pytest.mark.influx


def influx_env(database: InfluxDatabase) -> dict[str, str]:
    return {
        "INFLUX_URL": database.url,
        "INFLUX_TOKEN": database.token,
        "INFLUX_ORG": database.org,
        "INFLUX_BUCKET": database.bucket,
    }


def simulate_archive(directory: Path, config: SimulationConfig) -> list[dict[str, Any]]:
    """The simulator's bytes as `recorder run` would archive them (hourly capture files)."""
    truth: list[dict[str, Any]] = []
    archive = Archive(directory, retention_days=0)
    for data, seconds in BusSimulation(config).run(truth.append):
        archive.write(data, config.start + timedelta(seconds=seconds))
    archive.close()
    return truth


def backfill(database: InfluxDatabase, db: Path, *arguments: str, check: bool = True) -> Any:
    return run_recorder(
        "backfill", *arguments, "--db", str(db), env=influx_env(database), check=check, timeout=900
    )


def count(database: InfluxDatabase) -> int:
    rows = database.server.query("SELECT count(voltage_in) FROM tigo_optimizer", database.name)
    return int(rows[0]["count"]) if rows else 0


@pytest.mark.slow
def test_a_simulated_week_backfills_to_the_ground_truth_and_again_to_the_same(
    influx_database: InfluxDatabase, tmp_path: Path
) -> None:
    config = SimulationConfig(
        start=datetime.fromisoformat("2025-06-16T00:00:00+00:00"),
        duration=timedelta(days=7),
        nodes=135,
        seed=17,
    )
    archive = tmp_path / "archive"
    truth = simulate_archive(archive, config)
    assert len(list(archive.rglob("*.cap.gz"))) == 7 * 24
    db = tmp_path / "state.db"
    first = backfill(influx_database, db, str(archive))
    assert "0 readings without a barcode" in first.stdout
    reports = [r for r in power_reports(truth) if not r["destroyed"]]
    # (the summary in the message tells a point lost by the recorder from one lost by InfluxDB)
    assert count(influx_database) == len(reports) > 2_000_000, first.stdout
    # Every node: same number of points and the same sums of every value as the ground truth.
    expected: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0.0, 0.0, 0.0])
    for r in reports:
        sums = expected[r["barcode"]]
        sums[0] += 1
        sums[1] += r["voltage_in"]
        sums[2] += r["current_in"]
        sums[3] += r["voltage_out"]
        sums[4] += r["temperature"]
        sums[5] += r["rssi"]
    series = influx_database.server.query_series(
        "SELECT count(voltage_in), sum(voltage_in), sum(current_in), sum(voltage_out), sum(temperature), sum(rssi) "
        "FROM tigo_optimizer GROUP BY barcode",
        influx_database.name,
    )
    assert len(series) == 135
    for entry in series:
        stored = entry["values"][0][1:]
        assert stored == pytest.approx(expected[entry["tags"]["barcode"]], rel=1e-9), entry["tags"]["barcode"]
    # And point by point (values, barcodes, times) for a few optimizers.
    for barcode in sorted(expected)[:3]:
        points = influx_database.server.query(
            f"SELECT * FROM tigo_optimizer WHERE barcode = '{barcode}'", influx_database.name
        )
        mine = [r for r in truth if r["type"] != "power_report" or r["barcode"] == barcode]
        result = compare_points(mine, points)
        assert result.exact and not result.barcode_mismatches and result.matched == expected[barcode][0], (
            result.summary()
        )
    # Again: nothing doubles.
    backfill(influx_database, db, str(archive))
    assert count(influx_database) == len(reports)


def test_backfilling_a_day_that_run_recorded_adds_nothing(
    influx_database: InfluxDatabase, tmp_path: Path
) -> None:
    db, archive = tmp_path / "state.db", tmp_path / "archive"
    source = "sim:?start=2025-06-21T06:00:00%2B00:00&duration=4h&nodes=30&seed=23&noise=0.01"
    run_recorder(
        "run",
        "--source",
        source,
        "--db",
        str(db),
        "--archive",
        str(archive),
        "--exit-at-end",
        env=influx_env(influx_database),
        timeout=300,
    )
    recorded = count(influx_database)
    assert recorded > 5000
    summary = backfill(influx_database, db, str(archive)).stdout
    assert f"{recorded} points written" in summary  # the same points, written again...
    assert count(influx_database) == recorded  # ...land on themselves


def test_taptap_json_lines_with_an_infrastructure_report_at_the_end(
    influx_database: InfluxDatabase, tmp_path: Path
) -> None:
    barcodes = {116: "4-9A57A2L", 117: "4-C286CCZ"}
    lines = []
    start = datetime.fromisoformat("2024-08-24T09:16:41.686961-05:00")
    for step in range(20):
        for node, _barcode in barcodes.items():
            lines.append(
                {
                    "event_type": "power_report",
                    "gateway": 4609 if step % 2 else {"id": 4609},
                    "node": node if step % 2 else {"id": node},
                    "timestamp": (start + timedelta(seconds=20 * step, milliseconds=node)).isoformat(),
                    "voltage_in": 30.6,
                    "voltage_out": 30.2,
                    "current": 6.94,
                    "dc_dc_duty_cycle": 1.0,
                    "temperature": -1.5,
                    "rssi": 132,
                }
            )
    lines.append(
        {
            "event_type": "infrastructure_report",
            "gateways": {"4609": {"address": "04:C0:5B:30:00:02:BE:16", "version": "x"}},
            "nodes": {
                "4609": {
                    str(n): {"address": format_long_address(address_from_barcode(b)), "barcode": b}
                    for n, b in barcodes.items()
                }
            },
        }
    )
    path = tmp_path / "taptap.log.gz"
    path.write_bytes(gzip.compress("\n".join(json.dumps(line) for line in lines).encode()))
    output = backfill(influx_database, tmp_path / "state.db", str(path)).stdout
    assert "40 points written" in output and "0 readings without a barcode" in output
    points = influx_database.server.query("SELECT * FROM tigo_optimizer", influx_database.name)
    assert len(points) == 40
    assert {(int(p["node_id"]), p["barcode"]) for p in points} == set(barcodes.items())
    first = min(p["time"] for p in points)
    assert first == int((start + timedelta(milliseconds=116)).timestamp() * 1000)  # before the report: tagged
    # Values are quantised to the wire's steps, then converted as for bus data (612 × 1388 / 4000
    # = 212.364 W, written to 0.01 W).
    assert {(p["voltage_in"], p["current_in"], p["temperature"], p["power"]) for p in points} == {
        (30.6, 6.94, -1.5, 212.36)  # power to 0.01 W
    }


def simulated_truth(start: str, *, reassign: bool, seed: int) -> list[dict[str, Any]]:
    """Two gateways of five optimizers for an hour, from 10:00 local solar time."""
    config = SimulationConfig(
        start=datetime.fromisoformat(start), duration=timedelta(hours=1), gateways=2, nodes=5, seed=seed
    ).with_changes(reassign=reassign)
    truth: list[dict[str, Any]] = []
    for _ in BusSimulation(config).run(truth.append):
        pass
    return truth


def mapping_at(truth: list[dict[str, Any]], gateway_id: int, node_id: int, at: datetime) -> dict[str, Any]:
    """The truth's mapping of a node valid at `at`."""
    valid = [
        r
        for r in truth
        if r["type"] == "mapping"
        and (r["gateway_id"], r["node_id"]) == (gateway_id, node_id)
        and datetime.fromisoformat(r["valid_from"]) <= at
    ]
    return valid[-1]


def taptap_time(measured_at: str, offset_hours: float, digits: int, salt: int) -> str:
    """The truth's (whole-millisecond) time in another UTC offset, with `digits` fraction digits,
    the ones beyond the millisecond made up (taptap prints its clock's microseconds and more)."""
    at = datetime.fromisoformat(measured_at).astimezone(timezone(timedelta(hours=offset_hours)))
    fraction = f"{at.microsecond // 1000:03d}" + f"{salt * 7919 % 10**6:06d}"
    return (
        at.strftime("%Y-%m-%dT%H:%M:%S")
        + "."
        + fraction[:digits]
        + at.strftime("%z")[:3]
        + ":"
        + at.strftime("%z")[3:]
    )


def taptap_values(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "voltage_in": report["voltage_in"],
        "voltage_out": report["voltage_out"],
        "current": report["current_in"],
        "dc_dc_duty_cycle": report["duty_cycle"],
        "temperature": report["temperature"],
        "rssi": report["rssi"],
    }


def infrastructure_report(truth: list[dict[str, Any]], at: datetime, *, as_bytes: bool) -> dict[str, Any]:
    """The fork's identity line as it would print it at `at`."""

    def address(text: str) -> Any:
        return list(bytes.fromhex(text.replace(":", ""))) if as_bytes else text

    nodes: dict[str, dict[str, Any]] = {}
    for r in truth:
        if r["type"] == "mapping" and datetime.fromisoformat(r["valid_from"]) <= at:
            nodes.setdefault(str(r["gateway_id"]), {})[str(r["node_id"])] = {
                "address": address(r["long_address"]),
                "barcode": r["barcode"],
            }
    gateways = {
        str(r["gateway_id"]): {"address": address(r["long_address"]), "version": "Mgate Version G8.59\r"}
        for r in truth
        if r["type"] == "gateway"
    }
    return {"event_type": "infrastructure_report", "gateways": gateways, "nodes": nodes}


def write_lines(path: Path, lines: list[Any]) -> None:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.write_bytes(gzip.compress(text.encode()) if path.suffix == ".gz" else text.encode())


def points_between(database: InfluxDatabase, start: str, hours: int = 1) -> list[dict[str, Any]]:
    begin = datetime.fromisoformat(start)
    return database.server.query(
        f"SELECT * FROM tigo_optimizer WHERE time >= '{begin.isoformat()}' "
        f"AND time < '{(begin + timedelta(hours=hours)).isoformat()}'",
        database.name,
    )


def assert_points_are_the_truth(truth: list[dict[str, Any]], points: list[dict[str, Any]]) -> None:
    result = compare_points(truth, points)
    assert result.exact and not result.barcode_mismatches, result.summary()
    assert result.matched == len(power_reports(truth)) > 800
    assert result.max_time_error == 0  # to the millisecond


def test_taptap_json_in_every_shape_lands_exactly_under_the_barcode_of_its_time(
    influx_database: InfluxDatabase, tmp_path: Path
) -> None:
    # 1. The seed's lines: untagged, gateway and node as objects, -05:00 and six fraction digits;
    # taptap learned the addresses after ten minutes (the earlier lines name none), and a
    # replacement mid-hour shows as the node's new address.
    seed_start = "2025-06-21T10:00:00+00:00"
    seed_truth = simulated_truth(seed_start, reassign=True, seed=61)
    learned_at = datetime.fromisoformat(seed_start) + timedelta(minutes=10)
    gateway_addresses = {r["gateway_id"]: r["long_address"] for r in seed_truth if r["type"] == "gateway"}
    seed_lines = []
    for number, r in enumerate(sorted(power_reports(seed_truth), key=lambda r: r["measured_at"])):
        at = datetime.fromisoformat(r["measured_at"])
        gateway: dict[str, Any] = {"id": r["gateway_id"]}
        node: dict[str, Any] = {"id": r["node_id"]}
        if at >= learned_at:
            mapping = mapping_at(seed_truth, r["gateway_id"], r["node_id"], at)
            node.update(
                address=list(bytes.fromhex(mapping["long_address"].replace(":", ""))),
                barcode=mapping["barcode"],
            )
            gateway["address"] = list(bytes.fromhex(gateway_addresses[r["gateway_id"]].replace(":", "")))
        timestamp = taptap_time(r["measured_at"], -5, 6, number)
        seed_lines.append({"gateway": gateway, "node": node, "timestamp": timestamp, **taptap_values(r)})
    assert (
        seed_lines[0]["timestamp"].endswith("-05:00") and len(seed_lines[0]["timestamp"].split(".")[1]) == 12
    )

    # 2. The fork's flat lines (`event_type`), offsets and fraction lengths of all kinds, with its
    # infrastructure reports in byte arrays: one at the start, one when the replacement shows.
    fork_start = "2025-06-22T10:00:00+00:00"
    fork_truth = simulated_truth(fork_start, reassign=True, seed=67)
    changed_at = max(datetime.fromisoformat(r["valid_from"]) for r in fork_truth if r["type"] == "mapping")
    replaced = next(r for r in fork_truth if r["type"] == "mapping" and r["node_id"] & 0x8000)
    fork_lines: list[Any] = [
        infrastructure_report(fork_truth, datetime.fromisoformat(fork_start), as_bytes=True)
    ]
    announced = False
    for number, r in enumerate(sorted(power_reports(fork_truth), key=lambda r: r["measured_at"])):
        at = datetime.fromisoformat(r["measured_at"])
        if not announced and at >= changed_at and r["node_id"] == replaced["node_id"] & 0x7FFF:
            fork_lines.append(infrastructure_report(fork_truth, at, as_bytes=True))
            announced = True
        offset = (-5, 0, 5.5, 9, -3.5)[number % 5]
        timestamp = taptap_time(r["measured_at"], offset, (3, 6, 9)[number % 3], number)
        if number % 7 == 0:
            timestamp = timestamp.replace("+00:00", "Z")
        fork_lines.append(
            {
                "event_type": "power_report",
                "gateway": r["gateway_id"],
                "node": r["node_id"],
                "timestamp": timestamp,
            }
            | taptap_values(r)
        )
    assert announced

    # 3. Flat lines tagged `type`, with the only identity in an infrastructure report at the end
    # (addresses as text), and a last line cut short when taptap was stopped.
    late_start = "2025-06-23T10:00:00+00:00"
    late_truth = simulated_truth(late_start, reassign=False, seed=71)
    late_lines: list[Any] = [
        {"type": "power_report", "gateway": r["gateway_id"], "node": r["node_id"]}
        | {"timestamp": taptap_time(r["measured_at"], 2, 6, number)}
        | taptap_values(r)
        for number, r in enumerate(sorted(power_reports(late_truth), key=lambda r: r["measured_at"]))
    ]
    late_lines += [infrastructure_report(late_truth, datetime.fromisoformat(late_start), as_bytes=False)]
    late_lines += ['{"type": "power_report", "gateway": 4609, "node": 3, "timestamp": "2025-06-23T12:00']

    files = {"seed.jsonl": seed_lines, "fork.jsonl.gz": fork_lines, "late.log": late_lines}
    outputs = {}
    for name, lines in files.items():
        write_lines(tmp_path / name, lines)
        # Each its own installation: its own state database.
        outputs[name] = backfill(influx_database, tmp_path / f"{name}.db", str(tmp_path / name)).stdout
    for name, truth, start in (
        ("seed.jsonl", seed_truth, seed_start),
        ("fork.jsonl.gz", fork_truth, fork_start),
        ("late.log", late_truth, late_start),
    ):
        assert "0 readings without a barcode" in outputs[name], outputs[name]
        assert_points_are_the_truth(truth, points_between(influx_database, start))
    # The replaced optimizer: the old unit's barcode up to the replacement, the new one's after.
    node = replaced["node_id"] & 0x7FFF
    mine = [
        p
        for p in points_between(influx_database, fork_start)
        if int(p["node_id"]) == node and p["gateway"] == str(replaced["gateway_id"])
    ]
    assert len({p["barcode"] for p in mine}) == 2
    # The cut-short line is counted and named, and the rest went in.
    last = len(late_lines)
    assert (
        f"1 line not recognised as taptap JSON, left out (the first: {tmp_path / 'late.log'} line {last}: not JSON"
        in outputs["late.log"]
    )


def test_reassignment_inside_the_backfilled_period(influx_database: InfluxDatabase, tmp_path: Path) -> None:
    # Midday: the new unit reports (and announces itself) right after the replacement at 12:00.
    config = SimulationConfig(
        start=datetime.fromisoformat("2025-06-21T10:00:00+00:00"),
        duration=timedelta(hours=4),
        nodes=20,
        seed=11,
        reassign=True,
    )
    truth = simulate_archive(tmp_path / "archive", config)
    backfill(influx_database, tmp_path / "state.db", str(tmp_path / "archive"))
    points = influx_database.server.query("SELECT * FROM tigo_optimizer", influx_database.name)
    result = compare_points(truth, points)
    assert result.exact and not result.barcode_mismatches, result.summary()
    change = next(r for r in truth if r["type"] == "mapping" and r["node_id"] & 0x8000)  # the bit-15 alias
    node = change["node_id"] & 0x7FFF
    mine = {p["barcode"] for p in points if int(p["node_id"]) == node}
    assert len(mine) == 2  # the old unit before, the new one after


def test_bad_files_are_reported_and_skipped_the_rest_is_written(
    influx_database: InfluxDatabase, tmp_path: Path
) -> None:
    inputs = tmp_path / "inputs"
    config = SimulationConfig(
        start=datetime.fromisoformat("2025-06-21T10:00:00+00:00"),
        duration=timedelta(minutes=20),
        nodes=10,
        seed=29,
    )
    simulate_archive(inputs, config)
    good = sorted(inputs.rglob("*.cap.gz"))
    corrupt = inputs / "2025" / "06" / "21" / "2025-06-21T11.cap.gz"
    data = bytearray(good[0].read_bytes())
    data[60:90] = b"\x00" * 30
    corrupt.write_bytes(bytes(data))
    (inputs / "notes.json").write_text("this is not JSON at all\n")
    (inputs / "random.bin").write_bytes(bytes(range(256)) * 10)
    completed = backfill(influx_database, tmp_path / "state.db", str(inputs), check=False)
    assert completed.returncode == 1
    assert f"skipped {corrupt}: " in completed.stdout and "offset" in completed.stdout
    assert f"skipped {inputs / 'notes.json'}: not a capture file" in completed.stdout
    assert f"skipped {inputs / 'random.bin'}: not a capture file" in completed.stdout
    assert count(influx_database) > 500  # the good file went in


def garbage_files(directory: Path) -> list[Path]:
    """Random bytes, zeros and text: inputs with bytes and nothing in them for us."""
    directory.mkdir(exist_ok=True)
    files = {
        "random.bin": random.Random(5).randbytes(200_000),
        "zeros.bin": bytes(200_000),
        "notes.txt": "".join(
            f"line {n}: the quick brown fox jumps over the lazy dog\n" for n in range(3000)
        ).encode(),
    }
    for name, content in files.items():
        (directory / name).write_bytes(content)
    # A well-formed capture file whose records hold nothing but line noise.
    noise = directory / "noise.cap.gz"
    start = datetime.fromisoformat("2025-06-21T10:00:00+00:00")
    write_capture(
        noise, [(random.Random(n).randbytes(1000), start + timedelta(seconds=n)) for n in range(200)]
    )
    return [*(directory / name for name in files), noise]


@pytest.mark.parametrize("kind", ["raw", "capture", "taptap-json"])
def test_inputs_with_nothing_in_them_are_named_skipped_and_exit_1(
    influx_database: InfluxDatabase, tmp_path: Path, kind: str
) -> None:
    files = garbage_files(tmp_path / "inputs")
    completed = backfill(
        influx_database, tmp_path / "state.db", "--format", kind, *map(str, files), check=False
    )
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "0 readings, 0 points written" in completed.stdout
    hint = {
        "raw": "no TAP frames in 200.0 kB: is this a raw dump of the bus at 38400 8N1?",
        "capture": "not a capture file",
        "taptap-json": "is this the output of `taptap observe`?",
    }[kind]
    for path in files:
        skipped = next(
            line for line in completed.stdout.splitlines() if line.startswith(f"  skipped {path}: ")
        )
        expected = hint if kind != "capture" or path.name != "noise.cap.gz" else "no TAP frames in "
        assert expected.split(" in ")[0] in skipped, skipped
    assert count(influx_database) == 0


def test_observe_and_run_on_a_source_with_nothing_in_it_say_so_and_exit_1(
    influx_database: InfluxDatabase, tmp_path: Path
) -> None:
    random_bytes, zeros, text, noise = garbage_files(tmp_path / "inputs")
    for source in (f"raw:{random_bytes}", f"raw:{text}", f"capture:{noise}"):
        observed = run_recorder("observe", "--source", source, check=False)
        assert observed.returncode == 1
        assert json.loads(observed.stdout.splitlines()[-1])["type"] == "counters"  # the summary, then why
        assert f"{source.replace(':', ' ', 1)}: no TAP frames in " in observed.stderr
    ran = run_recorder(
        "run",
        "--source",
        f"raw:{zeros}",
        "--db",
        str(tmp_path / "state.db"),
        "--exit-at-end",
        "--archive-days",
        "0",
        env=influx_env(influx_database),
        check=False,
    )
    assert ran.returncode == 1
    assert (
        f"raw {zeros}: no TAP frames in 200.0 kB: is this a raw dump of the bus at 38400 8N1?" in ran.stderr
    )
    assert count(influx_database) == 0
    # A quiet night is not nothing: frames without a single power report are fine.
    night = tmp_path / "night.cap.gz"
    run_recorder(
        "simulate",
        "--start",
        "2025-06-21T23:00:00+00:00",
        "--duration",
        "10m",
        "--nodes",
        "3",
        "--no-controller-restart",
        "--out",
        str(night),
    )
    quiet = run_recorder("observe", "--source", f"capture:{night}")
    assert '"power_report"' not in quiet.stdout


def test_points_influxdb_rejects_are_counted_the_rest_is_written(
    influx_database: InfluxDatabase, tmp_path: Path
) -> None:
    """A batch with a field-type conflict is split until the offending points stand alone."""
    server, name = influx_database.server, influx_database.name
    # Hourly shards, and a float `rssi` in the 10:00 one: the recorder's integer rssi conflicts
    # there (InfluxDB 1.x checks field types per shard), not in the 11:00 shard.
    server.execute(f'ALTER RETENTION POLICY "autogen" ON "{name}" SHARD DURATION 1h')
    server.write_v1(name, b"tigo_optimizer,node_id=1 rssi=1.5 1750500000000\n")  # 10:00:00Z
    archive = tmp_path / "archive"
    config = SimulationConfig(
        start=datetime.fromisoformat("2025-06-21T10:54:00+00:00"),
        duration=timedelta(minutes=10),
        nodes=8,
        seed=37,
    )
    truth = simulate_archive(archive, config)
    completed = backfill(
        influx_database, tmp_path / "state.db", str(archive), "--batch-size", "500", check=False
    )
    assert completed.returncode == 1 and "field type conflict" in completed.stderr
    # Truth times are exact; decoded ones within 0.3 s: a reading at 11:00:00 +- 1 s may land
    # in either shard.
    times = sorted(datetime.fromisoformat(r["measured_at"]) for r in power_reports(truth))
    boundary = datetime.fromisoformat("2025-06-21T11:00:00+00:00")
    early = sum(1 for at in times if at < boundary - timedelta(seconds=1))
    late = sum(1 for at in times if at >= boundary + timedelta(seconds=1))
    assert early > 50 and late > 50
    rejected = int(completed.stdout.split(" points rejected by InfluxDB")[0].rsplit(maxsplit=1)[-1])
    stored = count(influx_database)
    assert rejected + stored == len(times)  # every reading either written or reported
    assert early <= rejected <= len(times) - late and late <= stored <= len(times) - early


class FlakyFront:
    """A real HTTP proxy on loopback in front of InfluxDB that answers 503 once, to the first
    write after InfluxDB rejected a single line: a retry interrupting a bisection."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.rejected_single_line = False
        self.failed = False
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # /ping: the writer asks which API the server speaks
                request = urllib.request.Request(front.upstream + self.path, method="GET")
                with urllib.request.urlopen(request, timeout=30) as response:
                    self.send_response(response.status)
                    for name, value in response.headers.items():
                        if name.lower().startswith("x-influxdb"):
                            self.send_header(name, value)
                    body = response.read()
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if front.rejected_single_line and not front.failed:
                    front.failed = True
                    self._answer(503, b'{"message": "the front is restarting"}')
                    return
                request = urllib.request.Request(
                    front.upstream + self.path,
                    data=body,
                    headers={k: v for k, v in self.headers.items() if k.lower() != "host"},
                    method="POST",
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        self._answer(response.status, response.read())
                except urllib.error.HTTPError as error:
                    if error.code == 400 and body.count(b"\n") == 0:
                        front.rejected_single_line = True
                    self._answer(error.code, error.read())

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FlakyFront:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_rejected_line_is_counted_once_when_a_retry_interrupts_the_bisection(
    influx_database: InfluxDatabase, tmp_path: Path
) -> None:
    server, name = influx_database.server, influx_database.name
    # A float `rssi` in the 10:00 shard: every reading of 10:10-10:20 conflicts with it there.
    server.execute(f'ALTER RETENTION POLICY "autogen" ON "{name}" SHARD DURATION 1h')
    server.write_v1(name, b"tigo_optimizer,node_id=1 rssi=1.5 1750500000000\n")  # 10:00:00Z
    config = SimulationConfig(
        start=datetime.fromisoformat("2025-06-21T10:10:00+00:00"),
        duration=timedelta(minutes=10),
        nodes=3,
        seed=53,
    )
    truth = simulate_archive(tmp_path / "archive", config)
    with FlakyFront(influx_database.url) as front:
        completed = run_recorder(
            "backfill",
            str(tmp_path / "archive"),
            "--db",
            str(tmp_path / "state.db"),
            "--batch-size",
            "8",
            env={**influx_env(influx_database), "INFLUX_URL": front.url},
            check=False,
            timeout=300,
        )
    assert front.failed and "the front is restarting" in completed.stderr  # the retry happened
    assert completed.returncode == 1
    readings = len(power_reports(truth))
    assert f" {readings} readings, 0 points written" in completed.stdout
    assert f"\n  {readings} points rejected by InfluxDB" in completed.stdout  # each one once
    assert count(influx_database) == 0


def test_since_until_and_dry_run(influx_database: InfluxDatabase, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    config = SimulationConfig(
        start=datetime.fromisoformat("2025-06-21T10:00:00+00:00"),
        duration=timedelta(hours=1),
        nodes=10,
        seed=31,
    )
    simulate_archive(archive, config)
    db = tmp_path / "state.db"
    dry = backfill(influx_database, db, str(archive), "--dry-run").stdout
    assert "points would be written" in dry and count(influx_database) == 0 and not db.exists()
    backfill(
        influx_database,
        db,
        str(archive),
        "--since",
        "2025-06-21T10:20:00Z",
        "--until",
        "2025-06-21T10:40:00+00:00",
    )
    times = [
        p["time"] for p in influx_database.server.query("SELECT * FROM tigo_optimizer", influx_database.name)
    ]
    assert times and min(times) >= 1750501200000 and max(times) < 1750502400000


def test_missing_path_and_bad_format_are_one_line(tmp_path: Path) -> None:
    completed = run_recorder(
        "backfill", str(tmp_path / "nope"), "--db", str(tmp_path / "s.db"), "--dry-run", check=False
    )
    assert completed.returncode == 1 and "does not exist" in completed.stdout
    wrong = run_recorder(
        "backfill", str(tmp_path), "--format", "csv", "--db", str(tmp_path / "s.db"), check=False
    )
    assert wrong.returncode == 2 and "--format: 'csv' is not one of capture, raw, taptap-json" in wrong.stderr
