"""What the live face (status page, /api/status, /metrics) costs.

    python benchmarks/live.py [--nodes 135] [--minutes 5] [--page-every 5] [--scrape-every 15]

1. Rendering, in this process, for a simulated array of `--nodes` optimizers (real readings
   from the simulator through the decoder, every optimizer labelled with a name and a string):
   /metrics in Prometheus text and OpenMetrics, /api/status, and the read loop's hand-off of a
   reading to the view. Target from issue "A live face": /metrics < 20 ms for 135 optimizers.
2. Live CPU at real time: one simulator (`recorder simulate --listen`, midday) serves two
   `recorder run` processes at once, each writing to its own database of a throwaway InfluxDB:
   one with the face off (`--http ""`), one with it on while a client does what an open page
   does (the page once, then /api/status every `--page-every` s) and what Prometheus does
   (/metrics every `--scrape-every` s). Both run side by side for `--minutes`, so a shared
   machine's noise falls on both alike. Target: < 1 % of one core with the page open.

CPU comes from /proc for each recorder process alone. The request times in phase 2 are as the
client saw them over loopback, health reads from SQLite included.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prometheus_client.exposition import generate_latest  # noqa: E402
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest  # noqa: E402

from benchmarks.proc import MIDDAY, cpu_seconds, peak_rss_mb, start_simulator  # noqa: E402
from recorder.live.latest import LatestReadings  # noqa: E402
from recorder.live.metrics import LiveCollector, render_metrics  # noqa: E402
from recorder.live.snapshot import LiveData  # noqa: E402
from recorder.live.status import status_document  # noqa: E402
from recorder.pipeline import DecodePipeline  # noqa: E402
from recorder.sim.bus import BusSimulation  # noqa: E402
from recorder.sim.config import SimulationConfig  # noqa: E402
from recorder.storage.state import Labels  # noqa: E402
from tests.influx import LocalInfluxDB, free_ports  # noqa: E402

COUNTED = (
    "bytes frames checksum_errors noise_bytes truncated_frames runts giants unknown_frame_types "
    "unknown_packet_types power_reports invalid_power_reports duplicate_reports topology_reports "
    "node_tables readings points_written write_errors source_reconnects watchdog_reconnects "
    "archive_errors unresolved_written unresolved_dropped outbox_ready outbox_held points_parked "
    "unresolved_nodes"
)
HEALTH: dict[str, Any] = {
    **dict.fromkeys(COUNTED.split(" "), 123456),
    "source_connected": True,
    "decode_stalled": False,
    "influx_reachable": True,
    "latency_p50_ms": 40,
    "latency_p99_ms": 900,
    "source": "tcp://192.168.1.50:7160",
    "source_state": "connected",
    "last_data_at": "2025-06-21T11:10:00+00:00",
    "influx_url": "http://localhost:8086",
    "influx_bucket": "tigo",
}


def simulated_readings(nodes: int) -> list[tuple[list[Any], datetime]]:
    config = SimulationConfig(
        start=datetime.fromisoformat(MIDDAY), duration=timedelta(minutes=3), nodes=nodes, seed=1
    )
    pipeline = DecodePipeline()
    batches = []
    for data, seconds in BusSimulation(config).run():
        at = config.start + timedelta(seconds=seconds)
        readings = pipeline.feed(data, at).readings
        if readings:
            batches.append((readings, at))
    return batches


class Fixed:
    """Already collected metric families, to time the encoder alone."""

    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> list[Any]:
        return self.families


def timed(function: Any, rounds: int) -> tuple[float, float, float]:
    """(median wall, p99 wall, median CPU) milliseconds per call. On a shared machine the CPU
    time is the steadier figure: waiting for a core does not count in it."""
    walls, cpus = [], []
    for _ in range(rounds):
        started, cpu = time.perf_counter(), time.process_time()
        function()
        cpus.append((time.process_time() - cpu) * 1000)
        walls.append((time.perf_counter() - started) * 1000)
    walls.sort()
    return statistics.median(walls), walls[min(int(rounds * 0.99), rounds - 1)], statistics.median(cpus)


def render_phase(nodes: int, rounds: int) -> None:
    batches = simulated_readings(nodes)
    readings = sum(len(outputs) for outputs, _ in batches)
    latest = LatestReadings(timedelta(minutes=10))
    started = time.perf_counter()
    for outputs, at in batches:
        latest.observe(outputs, at)
    handoff = (time.perf_counter() - started) / max(readings, 1) * 1e6
    labels: dict[bytes, Labels] = {}
    for index, optimizer in enumerate(latest.snapshot().optimizers):
        if optimizer.reading.long_address is not None:
            labels[optimizer.reading.long_address] = Labels(f"panel {index + 1}", f"S{index // 15 + 1}")
    data = LiveData(latest, health=lambda: HEALTH, labels=lambda: labels)
    collector = LiveCollector(data)
    count = len(latest.snapshot().optimizers)
    text, _ = render_metrics(collector)
    families = Fixed(list(collector.collect()))
    print(f"rendering, {count} optimizers ({readings} readings fed), {rounds} rounds each:")
    print(f"  {'':<24}{'median':>7}   {'p99':>6}   {'CPU':>6}   (wall median, wall p99, CPU median)")
    for name, function in (
        ("/metrics", lambda: render_metrics(collector)),
        ("  its encoding alone", lambda: generate_latest(families)),
        ("  as OpenMetrics", lambda: openmetrics_latest(families)),
        ("/api/status (JSON)", lambda: status_document(data.snapshot(), "bench")),
        ("snapshot alone", lambda: data.snapshot()),
    ):
        median, p99, cpu = timed(function, rounds)
        target = "  (target < 20 ms)" if name == "/metrics" else ""
        print(f"  {name:<24}{median:7.2f}   {p99:6.2f}   {cpu:6.2f} ms{target}")
    lines = text.count(b"\n")
    print(f"  /metrics body: {len(text) / 1024:.0f} KiB, {lines} lines")
    print(f"  read loop hand-off (LatestReadings.observe): {handoff:.2f} µs per reading")


class PageClient(threading.Thread):
    """An open status page (the page once, then /api/status every few seconds) and a Prometheus."""

    def __init__(self, url: str, page_every: float, scrape_every: float) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.page_every = page_every
        self.scrape_every = scrape_every
        self.stop = threading.Event()
        self.times: dict[str, list[float]] = {"/": [], "/api/status": [], "/metrics": []}
        self.failures = 0

    def fetch(self, path: str) -> None:
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:
                response.read()
            self.times[path].append((time.perf_counter() - started) * 1000)
        except OSError:
            self.failures += 1

    def run(self) -> None:
        self.fetch("/")
        next_page = next_scrape = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= next_page:
                self.fetch("/api/status")
                next_page += self.page_every
            if now >= next_scrape:
                self.fetch("/metrics")
                next_scrape += self.scrape_every
            self.stop.wait(max(min(next_page, next_scrape) - time.monotonic(), 0.01))


def start_recorder(
    influx: LocalInfluxDB, work: Path, name: str, port: int, http: str
) -> subprocess.Popen[str]:
    database = f"bench_{name}"
    influx.create_database(database)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recorder.cli.app",
            "run",
            "--db",
            str(work / f"{name}.db"),
            "--source",
            f"tcp://127.0.0.1:{port}",
            "--archive",
            str(work / f"{name}-archive"),
            "--http",
            http,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={
            **os.environ,
            "INFLUX_URL": influx.url,
            "INFLUX_TOKEN": "bench:bench",
            "INFLUX_ORG": "-",
            "INFLUX_BUCKET": database,
            "RECORDER_LOG_LEVEL": "WARNING",
        },
    )


def live_phase(nodes: int, minutes: float, page_every: float, scrape_every: float) -> None:
    with tempfile.TemporaryDirectory(prefix="recorder-bench-live-") as scratch:
        work = Path(scratch)
        influx = LocalInfluxDB(work / "influx")
        influx.start()
        simulator: subprocess.Popen[str] | None = None
        recorders: list[subprocess.Popen[str]] = []
        try:
            simulator, port = start_simulator(speed="realtime", duration=f"{minutes + 1}m", nodes=nodes)
            http_port = free_ports(1)[0]
            without = start_recorder(influx, work, "without", port, "")
            with_face = start_recorder(influx, work, "with", port, f"127.0.0.1:{http_port}")
            recorders = [without, with_face]
            time.sleep(10)  # imports, start-up and the first node table are not what we measure
            client = PageClient(f"http://127.0.0.1:{http_port}", page_every, scrape_every)
            client.start()
            started = time.monotonic()
            before = [cpu_seconds(r.pid) for r in recorders]
            time.sleep(minutes * 60)
            elapsed = time.monotonic() - started
            used = [cpu_seconds(r.pid) - b for r, b in zip(recorders, before, strict=True)]
            rss = [peak_rss_mb(r.pid) for r in recorders]
            client.stop.set()
            client.join(15)
        finally:
            for process in recorders:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(30)
            if simulator is not None and simulator.poll() is None:
                simulator.kill()
                simulator.wait(10)
            influx.stop()
    print(
        f"real time, {nodes} optimizers, {elapsed:.0f} s side by side; page refresh every {page_every:g} s, "
        f"/metrics every {scrape_every:g} s:"
    )
    rows = (("face off (--http '')", used[0], rss[0]), ("face on, page open", used[1], rss[1]))
    for label, cpu, peak in rows:
        share = 100 * cpu / elapsed
        print(f"  {label:<22} CPU {cpu:6.2f} s = {share:5.2f} % of one core, peak RSS {peak:4.0f} MB")
    difference = 100 * (used[1] - used[0]) / elapsed
    print(f"  difference: {difference:+.2f} % of one core (target: with the page open < 1 % in all)")
    for path, times in client.times.items():
        if times:
            print(
                f"  GET {path:<12} {len(times):4d} requests, median {statistics.median(times):6.2f} ms, "
                f"max {max(times):6.2f} ms"
            )
    if client.failures:
        print(f"  {client.failures} requests failed")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=135)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--minutes", type=float, default=5.0, help="length of the live phase (0: skip it)")
    parser.add_argument("--page-every", type=float, default=5.0)
    parser.add_argument("--scrape-every", type=float, default=15.0)
    args = parser.parse_args()
    started = datetime.now(UTC)
    print(f"benchmarks/live.py at {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs (noisy if shared)")
    render_phase(args.nodes, args.rounds)
    if args.minutes > 0:
        live_phase(args.nodes, args.minutes, args.page_every, args.scrape_every)


if __name__ == "__main__":
    main()
