"""`recorder backfill` against a real InfluxDB (issue "recorder backfill")."""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from recorder.archive import Archive
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
    assert count(influx_database) == len(reports) > 2_000_000
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
