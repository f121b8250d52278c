"""The live face of a real `recorder run`: a real Prometheus scrapes it, a real Chromium loads it.

One recorder for the module: a simulated 135-optimizer array (`recorder simulate --listen`, real
time, its strings and names imported as labels the way the quickstart does) is read over TCP and
written to the test InfluxDB, with `--http` on a free loopback port. A Prometheus started before
the recorder scrapes it every second. When the simulator has finished, the latest reading of
each optimizer is its last report in the simulator's ground truth, and that is what Prometheus
and the page must show.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import pytest

from recorder.sim.truth import load_truth, power_reports
from tests.chromium import ChromiumUnavailable, dump_dom, find_chromium, screenshot
from tests.conftest import ROOT
from tests.influx import LocalInfluxDB, free_ports
from tests.live.helpers import TileParser
from tests.live.running import fresh_database, influx_env, label_array, last_reports, run_command
from tests.prometheus import LocalPrometheus, PrometheusUnavailable

pytestmark = [pytest.mark.influx, pytest.mark.slow]

NODES = 135
SEED = "4"
START = "2025-06-21T11:00:00+00:00"  # midday: every optimizer produces
SECONDS = 42  # real time: every optimizer reports (each every 20 s) at least twice
TOKEN = "recorder:Pa55-live-face-secret"


@dataclass
class LiveRun:
    url: str
    prometheus: LocalPrometheus
    truth: list[dict[str, Any]]
    strings: dict[str, str]  # barcode -> string, from the simulator's array
    influx: LocalInfluxDB
    database: str
    stderr: Path

    def last_reports(self) -> dict[str, dict[str, Any]]:
        """Each optimizer's last report that reached the listener, by barcode."""
        return last_reports(self.truth)


@pytest.fixture(scope="module")
def live_run(influxdb: LocalInfluxDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRun]:
    try:
        find_chromium()
        prometheus = LocalPrometheus(tmp_path_factory.mktemp("prometheus"), [])
    except (ChromiumUnavailable, PrometheusUnavailable) as error:
        pytest.fail(str(error), pytrace=False)  # a skip would look like a pass
    work = tmp_path_factory.mktemp("live")
    db = work / "state.db"
    # The array's strings and names, from the simulator's truth, imported as labels.
    mappings = label_array(
        work, db, start=START, seed=SEED, nodes=NODES, name=lambda m: f"panel {m['node_id'] - 1}"
    )

    database = fresh_database(influxdb, "live")
    http_port = free_ports(1)[0]
    prometheus.targets = [f"127.0.0.1:{http_port}"]
    truth_file = work / "truth.jsonl"
    simulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recorder.cli.app",
            "simulate",
            "--listen",
            "tcp://127.0.0.1:0",
            "--speed",
            "realtime",
            "--duration",
            f"{SECONDS}s",
            "--start",
            START,
            "--seed",
            SEED,
            "--nodes",
            str(NODES),
            "--truth",
            str(truth_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    stderr = work / "recorder.stderr"
    recorder: subprocess.Popen[bytes] | None = None
    try:
        prometheus.start()
        assert simulator.stdout is not None
        port = simulator.stdout.readline().strip().rsplit(":", 1)[1]
        with stderr.open("wb") as errors:
            recorder = subprocess.Popen(
                run_command(db, f"tcp://127.0.0.1:{port}", "--http", f"127.0.0.1:{http_port}"),
                stdout=subprocess.DEVNULL,
                stderr=errors,
                cwd=ROOT,
                env=influx_env(influxdb, database, TOKEN),
            )
        simulator.wait(timeout=SECONDS + 120)
        yield LiveRun(
            url=f"http://127.0.0.1:{http_port}",
            prometheus=prometheus,
            truth=load_truth(truth_file),
            strings={m["barcode"]: m["string"] for m in mappings},
            influx=influxdb,
            database=database,
            stderr=stderr,
        )
    finally:
        if recorder is not None and recorder.poll() is None:
            recorder.send_signal(signal.SIGTERM)
            try:
                recorder.wait(30)
            except subprocess.TimeoutExpired:
                recorder.kill()
                recorder.wait(10)
        if simulator.poll() is None:
            simulator.kill()
            simulator.wait(10)
        prometheus.stop()
        influxdb.ensure_running()
        influxdb.drop_database(database)


def wait_for(condition: Any, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.5)


def scalar(run: LiveRun, promql: str) -> float | None:
    result = run.prometheus.query(promql)
    return result[0]["value"] if result else None


def by_barcode(run: LiveRun, promql: str) -> dict[str, dict[str, Any]]:
    return {item["metric"]["barcode"]: item for item in run.prometheus.query(promql)}


def test_prometheus_sees_every_optimizers_latest_reading_and_the_recorders_health(live_run: LiveRun) -> None:
    run = live_run
    last = run.last_reports()
    expected = sum(1 for report in power_reports(run.truth) if not report["destroyed"])
    assert len(last) == NODES
    # Everything decoded has been written and scraped since.
    wait_for(
        lambda: (
            scalar(run, "tigo_recorder_points_written_total") == expected
            and scalar(run, "count(tigo_optimizer_power_watts)") == NODES
        ),
        "Prometheus to see every reading written",
    )

    fields = {
        "tigo_optimizer_power_watts": lambda r: r["voltage_in"] * r["current_in"],
        "tigo_optimizer_voltage_in_volts": lambda r: r["voltage_in"],
        "tigo_optimizer_voltage_out_volts": lambda r: r["voltage_out"],
        "tigo_optimizer_current_in_amperes": lambda r: r["current_in"],
        "tigo_optimizer_current_out_amperes": lambda r: r["current_in"] / r["duty_cycle"],
        "tigo_optimizer_temperature_celsius": lambda r: r["temperature"],
        "tigo_optimizer_duty_cycle_ratio": lambda r: r["duty_cycle"],
        "tigo_optimizer_rssi": lambda r: r["rssi"],
    }
    for metric, value in fields.items():
        series = by_barcode(run, metric)
        assert set(series) == set(last), metric
        for barcode, item in series.items():
            assert item["value"] == pytest.approx(value(last[barcode]), rel=1e-9, abs=1e-9), (metric, barcode)
            labels = item["metric"]
            report = last[barcode]
            assert labels["gateway"] == str(report["gateway_id"]) and labels["node_id"] == str(
                report["node_id"]
            )
            assert (
                labels["string"] == run.strings[barcode]
                and labels["name"] == f"panel {report['node_id'] - 1}"
            )
            assert set(labels) == {
                "__name__",
                "barcode",
                "gateway",
                "node_id",
                "string",
                "name",
                "instance",
                "job",
            }

    # The timestamps are the last reports' measurement times. The recorder read the simulator
    # over TCP, so they are on the wall clock: one common offset from the simulated times, and
    # a report too early or too late would be 20 s off it.
    stamps = by_barcode(run, "tigo_optimizer_last_report_timestamp_seconds")
    offsets = {
        barcode: item["value"] - _epoch(last[barcode]["measured_at"]) for barcode, item in stamps.items()
    }
    assert set(offsets) == set(last)
    typical = median(offsets.values())
    assert all(abs(offset - typical) < 2.0 for offset in offsets.values()), offsets

    # PromQL over the labels: string totals as the ground truth has them.
    totals: dict[str, float] = {}
    for barcode, report in last.items():
        totals[run.strings[barcode]] = totals.get(run.strings[barcode], 0.0) + fields[
            "tigo_optimizer_power_watts"
        ](report)
    summed = {
        item["metric"]["string"]: item["value"]
        for item in run.prometheus.query("sum by (string) (tigo_optimizer_power_watts)")
    }
    assert summed == pytest.approx(totals, rel=1e-9)

    # Health counters and gauges.
    assert scalar(run, "tigo_recorder_readings_total") == expected
    assert scalar(run, "tigo_recorder_power_reports_total") == expected
    assert scalar(run, "tigo_recorder_checksum_errors_total") == 0
    assert (scalar(run, "tigo_recorder_frames_total") or 0) > expected
    assert (scalar(run, "tigo_recorder_bytes_total") or 0) > 0
    assert scalar(run, "tigo_recorder_outbox_ready") == 0
    assert scalar(run, "tigo_recorder_outbox_held") == 0
    assert scalar(run, "tigo_recorder_unresolved_nodes") == 0
    assert scalar(run, "tigo_recorder_influxdb_up") == 1
    wait_for(lambda: scalar(run, "tigo_recorder_source_connected") == 0, "the recorder to notice the end")
    # A counter's history: it rose during the run (Prometheus saw it grow, not just its end).
    assert (scalar(run, "max_over_time(tigo_recorder_readings_total[5m])") or 0) == expected
    assert (scalar(run, "min_over_time(tigo_recorder_readings_total[5m])") or 0) < expected
    # And the points Prometheus was told about are in InfluxDB.
    assert run.influx.count("tigo_optimizer", run.database, "power") == expected
    assert all(target["health"] == "up" for target in run.prometheus.targets_health())


def test_the_status_page_in_a_real_browser_shows_every_optimizer_with_its_power(
    live_run: LiveRun, tmp_path: Path
) -> None:
    run = live_run
    last = run.last_reports()
    wait_for(
        lambda: len(json.load(urllib.request.urlopen(f"{run.url}/api/status", timeout=5))["strings"]) > 0,
        "the status document",
    )
    parser = TileParser()
    parser.feed(dump_dom(run.url + "/"))
    tiles = {tile["bc"].strip(): tile for tile in parser.tiles}
    assert len(parser.tiles) == NODES and set(tiles) == set(last)
    for barcode, tile in tiles.items():
        assert tile["data-barcode"] == barcode
        shown = float(tile["pw"].strip().removesuffix("W").strip())
        power = last[barcode]["voltage_in"] * last[barcode]["current_in"]
        assert shown == pytest.approx(power, abs=0.5 if power >= 10 else 0.05), barcode
        assert "stale" not in tile["cls"].split() and "unres" not in tile["cls"].split()
    strings = sorted(set(run.strings.values()))
    assert [heading.strip() for heading in parser.headings] == [f"String {name}" for name in strings]

    # Screenshots, for a person to look at: desktop (light) and a phone (dark).
    directories = [tmp_path]
    if os.environ.get("RECORDER_SCREENSHOT_DIR"):
        directories.append(Path(os.environ["RECORDER_SCREENSHOT_DIR"]))
    for directory in directories:
        directory.mkdir(parents=True, exist_ok=True)
        screenshot(run.url + "/", directory / "status-desktop.png", window="1400,2400")
        screenshot(run.url + "/", directory / "status-phone.png", window="390,1600", dark=True)
        assert (directory / "status-desktop.png").stat().st_size > 20_000


def test_no_endpoint_shows_a_secret(live_run: LiveRun) -> None:
    password = TOKEN.split(":", 1)[1]
    for path in ("/", "/metrics", "/api/status"):
        with urllib.request.urlopen(live_run.url + path, timeout=10) as response:
            body = response.read().decode()
            assert response.headers["Cache-Control"] == "no-store"
        assert password not in body and TOKEN not in body, path
    log = live_run.stderr.read_text()
    assert "Traceback" not in log and password not in log
    assert f"status page on {live_run.url}/" in log


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()
