"""`recorder run` and `recorder backfill` write the same `tigo_energy` points for the same bus
traffic (issue "energy per panel"): a real InfluxDB, the simulator's bytes as a capture file.

The traffic crosses local midnight in Asia/Kolkata (18:30 UTC) with the sun up, so two local
days get energy and the first day's last trapezoids are split at midnight; noise destroys and
duplicates some reports. `run` records the capture into one database, `backfill` replays the
same file into another with a fresh state database (so it learns every identity from the file,
as `run` did): the two sets of points must be equal, bit for bit. A second backfill changes
nothing. A backfill of part of the input writes that part's energy (the partial-day rule).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_recorder
from tests.influx import LocalInfluxDB

pytestmark = [pytest.mark.influx, pytest.mark.slow]

ZONE = "Asia/Kolkata"
START = "2025-06-21T15:00:00+00:00"  # 20:30 local; midnight at 18:30 UTC


def environment(influxdb: LocalInfluxDB, database: str) -> dict[str, str]:
    return {"INFLUX_URL": influxdb.url, "INFLUX_TOKEN": "u:p", "INFLUX_ORG": "-", "INFLUX_BUCKET": database}


def energy_points(influxdb: LocalInfluxDB, database: str) -> dict[tuple[Any, ...], tuple[float, int]]:
    rows = influxdb.query("SELECT * FROM tigo_energy", database)
    points = {
        (row["time"], row.get("barcode"), row["gateway"], row["node_id"]): (
            row["energy_wh"],
            row["uncovered_seconds"],
        )
        for row in rows
    }
    assert len(points) == len(rows)
    return points


def test_run_and_backfill_write_the_same_daily_energy(influxdb: LocalInfluxDB, tmp_path: Path) -> None:
    influxdb.ensure_running()
    capture = tmp_path / "bus.cap.gz"
    run_recorder(
        "simulate", "--out", str(capture), "--start", START, "--duration", "5h", "--nodes", "12",
        "--seed", "5", "--noise", "0.01",
    )  # fmt: skip
    found = {}
    try:
        for name in ("run", "backfill"):
            influxdb.create_database(f"energy_{name}")
        run_recorder(
            "run", "--db", str(tmp_path / "run.db"), "--source", f"capture:{capture}", "--archive-days", "0",
            "--timezone", ZONE, "--exit-at-end", env=environment(influxdb, "energy_run"), timeout=900,
        )  # fmt: skip
        found["run"] = energy_points(influxdb, "energy_run")
        backfill_env = environment(influxdb, "energy_backfill")
        state = str(tmp_path / "backfill.db")
        completed = run_recorder(
            "backfill", str(capture), "--db", state, "--timezone", ZONE, env=backfill_env, timeout=900
        )
        assert (
            "daily energy: 24 tigo_energy points written for 2 day(s): 2025-06-21 to 2025-06-22"
            in completed.stdout
        )
        found["backfill"] = energy_points(influxdb, "energy_backfill")
        run_recorder(
            "backfill", str(capture), "--db", state, "--timezone", ZONE, env=backfill_env, timeout=900
        )
        found["again"] = energy_points(influxdb, "energy_backfill")
        # Part of the input: from 18:45 UTC (00:15 local on the 22nd) on. The 22nd gets the
        # energy of the readings replayed: all of its readings but the first quarter hour's.
        influxdb.drop_database("energy_backfill")
        influxdb.create_database("energy_backfill")
        run_recorder(
            "backfill", str(capture), "--db", state, "--timezone", ZONE, "--since", "2025-06-21T18:45:00+00:00",
            env=backfill_env, timeout=900,
        )  # fmt: skip
        found["partial"] = energy_points(influxdb, "energy_backfill")
    finally:
        for name in ("run", "backfill"):
            influxdb.drop_database(f"energy_{name}")
    run_points = found["run"]
    days = {key[0] for key in run_points}
    assert len(days) == 2 and len(run_points) == 2 * 12
    assert all(energy > 10 for energy, _ in run_points.values())
    assert found["backfill"] == run_points  # the same points, bit for bit
    assert found["again"] == run_points  # a second backfill changes nothing
    partial = found["partial"]
    second_day = max(days)
    assert {key[0] for key in partial} == {second_day}
    for key, (energy, _) in partial.items():
        assert 0 < energy < run_points[key][0]
