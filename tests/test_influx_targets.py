"""`recorder run` into the databases users have (issue 15): VictoriaMetrics through the v2 API,
several sites into one InfluxDB 1.6, and a misconfigured InfluxDB that a service keeps retrying.

(`recorder run` and `backfill` into a plain influxd 1.6 through the native 1.x API, outage
included, are tests/test_run.py and tests/test_backfill.py: their fixture has no v2 endpoint.)
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from recorder.sim.truth import compare_points, load_truth
from tests.conftest import ROOT, run_recorder
from tests.influx import ADMIN, InfluxDatabase, LocalInfluxDB, LocalVictoriaMetrics
from tests.test_run import drain_outbox

pytestmark = pytest.mark.influx


def sim(**options: object) -> str:
    return "sim:?" + "&".join(f"{key}={value}" for key, value in options.items())


def environment(url: str, bucket: str, token: str = "recorder:recorder", **extra: str) -> dict[str, str]:
    return {
        "RECORDER_CONFIG": "",
        "INFLUX_URL": url,
        "INFLUX_TOKEN": token,
        "INFLUX_ORG": "-",
        "INFLUX_BUCKET": bucket,
        **extra,
    }


def snap_duty_cycle(point: dict[str, Any]) -> dict[str, Any]:
    """VictoriaMetrics keeps 12 significant digits: a duty cycle k/255 written as
    0.9882352941176471 comes back as 0.988235294117. Every other value here has few digits and
    comes back exactly. The wire carries k (0..255), so the stored value must be within 1e-11 of
    exactly one k/255, and that k is what is compared with the truth."""
    duty = point["duty_cycle"]
    raw = round(duty * 255)
    assert abs(duty - raw / 255) < 1e-11, point
    return {**point, "duty_cycle": raw / 255}


def test_a_simulated_hour_into_victoria_metrics_equals_the_truth(
    victoria_metrics: LocalVictoriaMetrics, tmp_path: Path
) -> None:
    truth_file = tmp_path / "truth.jsonl"
    source = sim(
        start="2025-06-21T11:00:00%2B00:00",
        duration="1h",
        gateways=2,
        nodes=20,
        noise=0.01,
        firmware="4x",
        seed=11,
        truth=truth_file,
    )
    completed = run_recorder(
        "run",
        "--source",
        source,
        "--db",
        str(tmp_path / "state.db"),
        "--archive-days",
        "0",
        "--exit-at-end",
        "--site",
        "vm-hour",
        env=environment(victoria_metrics.url, "tigo"),
        timeout=600,
    )
    assert "writing through the v2 /api/v2/write API (--influx-api auto)" in completed.stderr
    points = [snap_duty_cycle(point) for point in victoria_metrics.points("tigo_optimizer", 'site="vm-hour"')]
    result = compare_points(load_truth(truth_file), points)
    assert result.exact and not result.barcode_mismatches, result.summary()
    assert result.matched == result.expected - result.destroyed and result.destroyed > 0
    assert {point["site"] for point in points} == {"vm-hour"}
    health = victoria_metrics.points("tigo_recorder", 'site="vm-hour"')
    assert health and max(point["readings"] for point in health) == result.matched


def start_run(
    database: InfluxDatabase, db: Path, site: str, truth: Path, **extra: str
) -> subprocess.Popen[str]:
    source = sim(start="2025-06-21T10:00:00%2B00:00", nodes=20, seed=3, speed="max", truth=truth, **extra)
    command = [sys.executable, "-m", "recorder.cli.app", "run", "--db", str(db), "--source", source]
    command += ["--archive-days", "0", "--exit-at-end", "--site", site]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, **environment(database.url, database.bucket, database.token)},
    )


def test_two_sites_into_one_database_keep_their_series_apart(
    influx_database: InfluxDatabase, tmp_path: Path
) -> None:
    # The same simulated array (same barcodes, gateway and node IDs, same times) at two sites,
    # recorded at once: without the site tag, one site's points would land on the other's.
    truths = {"north": tmp_path / "north.jsonl", "south": tmp_path / "south.jsonl"}
    runs = {
        "north": start_run(influx_database, tmp_path / "north.db", "north", truths["north"], duration="40m"),
        "south": start_run(influx_database, tmp_path / "south.db", "south", truths["south"], duration="20m"),
    }
    for name, process in runs.items():
        _, errors = process.communicate(timeout=600)
        assert process.returncode == 0, f"{name}: {errors}"
    server, database = influx_database.server, influx_database.name
    counts = {}
    for site, truth_file in truths.items():
        points = server.query(f"SELECT * FROM tigo_optimizer WHERE site = '{site}'", database)
        result = compare_points(load_truth(truth_file), points)
        assert result.exact and result.matched == result.expected, f"{site}: {result.summary()}"
        counts[site] = len(points)
    assert counts["north"] > counts["south"] > 0
    assert server.count("tigo_optimizer", database) == counts["north"] + counts["south"]
    barcodes = [
        {p["barcode"] for p in server.query(f"SELECT * FROM tigo_optimizer WHERE site = '{s}'", database)}
        for s in truths
    ]
    assert barcodes[0] == barcodes[1]  # the very same optimizers' names, kept apart by site only
    assert server.query("SELECT * FROM tigo_optimizer WHERE site = ''", database) == []
    health = server.query_series("SELECT last(readings) FROM tigo_recorder GROUP BY site", database)
    assert {entry["tags"]["site"] for entry in health} == {"north", "south"}
    # The schema as stored: no tag shares a name with a field (InfluxDB 3 refuses that).
    for measurement in ("tigo_optimizer", "tigo_recorder"):
        tags = {row["tagKey"] for row in server.query(f'SHOW TAG KEYS FROM "{measurement}"', database)}
        fields = {row["fieldKey"] for row in server.query(f'SHOW FIELD KEYS FROM "{measurement}"', database)}
        assert "site" in tags and fields and not tags & fields, (measurement, tags & fields)


def outbox(db: Path) -> int:
    with sqlite3.connect(db) as connection:
        return int(connection.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


def test_run_keeps_retrying_a_wrong_password_loudly_and_keeps_the_readings(
    influxdb_with_auth: LocalInfluxDB, tmp_path: Path
) -> None:
    server = influxdb_with_auth
    server.create_database("service")
    db = tmp_path / "state.db"
    command = [sys.executable, "-m", "recorder.cli.app", "run", "--db", str(db), "--archive-days", "0"]
    command += ["--source", sim(duration="2h", nodes=10, speed="100x")]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, **environment(server.url, "service", f"{ADMIN[0]}:not-the-password")},
    )
    try:
        time.sleep(8)  # several retries (1 s, 2 s, 4 s...)
        assert process.poll() is None, "a service must not give up"
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0
    refusals = [line for line in errors.splitlines() if "refused the credentials" in line]
    assert len(refusals) == 1 and " ERROR " in refusals[0], errors  # loud, once, not every retry
    assert "check --influx-token" in refusals[0] and "not-the-password" not in errors
    assert outbox(db) > 0  # everything read waits for the right password
    assert server.count("tigo_optimizer", "service") == 0
    # With the right password, the same database drains completely.
    drain_outbox(db, environment(server.url, "service", f"{ADMIN[0]}:{ADMIN[1]}"))
    assert outbox(db) == 0 and server.count("tigo_optimizer", "service") > 0
