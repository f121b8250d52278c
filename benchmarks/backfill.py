"""Backfill speed against a real InfluxDB, compared with the most direct upload it accepts.

    python benchmarks/backfill.py [--days 7] [--nodes 135] [--batch-size 20000]

1. Simulates the period (135 optimizers by default) into an archive of hourly capture files,
   as `recorder run` keeps them.
2. Decode only: the protocol stack over all archived bytes (MB/s; issue "Protocol stack" set
   >= 10 MB/s).
3. Direct upload: the same points as plain line protocol, POSTed in batches of the same size
   straight to influxd's own /write endpoint over one keep-alive connection: the fastest way to
   put these points into this server, with no decoding at all.
4. `recorder backfill` of the archive into a fresh database, through the v2 write API front
   (how a user's InfluxDB 1.8/2.x/3.x is written), start-up and decoding included.

Prints both rates and their ratio; target: the backfill reaches >= 70 % of the direct upload.
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recorder.archive import Archive  # noqa: E402
from recorder.backfill import Backfill, BackfillOptions  # noqa: E402
from recorder.capture import CaptureReader  # noqa: E402
from recorder.config import load_settings  # noqa: E402
from recorder.protocol.stack import Stack  # noqa: E402
from recorder.sim.bus import BusSimulation  # noqa: E402
from recorder.sim.config import SimulationConfig  # noqa: E402
from recorder.storage.state import StateStore  # noqa: E402
from tests.influx import LocalInfluxDB  # noqa: E402


class FileWriter:
    """Collects the points a backfill would write, as line protocol in a file."""

    def __init__(self, path: Path) -> None:
        self.stream = path.open("w", encoding="utf-8")
        self.points = 0

    def write(self, lines: list[str]) -> None:
        self.stream.write("\n".join(lines) + "\n")
        self.points += len(lines)

    def close(self) -> None:
        self.stream.close()


def direct_upload(
    influx: LocalInfluxDB, database: str, lines_file: Path, batch_size: int
) -> tuple[int, float]:
    parts = urlsplit(influx.influxd_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
    points = 0
    started = time.perf_counter()
    with lines_file.open("rb") as stream:
        while True:
            batch = [line for _, line in zip(range(batch_size), stream, strict=False)]
            if not batch:
                break
            connection.request("POST", f"/write?db={database}&precision=ms", body=b"".join(batch))
            response = connection.getresponse()
            response.read()
            if response.status != 204:
                raise RuntimeError(f"direct upload failed: {response.status}")
            points += len(batch)
    return points, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--nodes", type=int, default=135)
    parser.add_argument("--batch-size", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="recorder-backfill-bench-") as scratch:
        work = Path(scratch)
        archive = work / "archive"
        config = SimulationConfig(
            start=datetime.fromisoformat("2025-06-16T00:00:00+00:00"),
            duration=timedelta(days=args.days),
            nodes=args.nodes,
            seed=17,
        )
        started = time.perf_counter()
        writer = Archive(archive, retention_days=0)
        for data, seconds in BusSimulation(config).run():
            writer.write(data, config.start + timedelta(seconds=seconds))
        writer.close()
        files = sorted(archive.rglob("*.cap.gz"))
        size = sum(path.stat().st_size for path in files)
        print(
            f"simulated {args.days:g} days x {args.nodes} optimizers: {len(files)} archive files, "
            f"{size / 1e6:.0f} MB compressed, in {time.perf_counter() - started:.0f} s"
        )

        stack = Stack()
        raw_bytes = 0
        started = time.perf_counter()
        for path in files:
            for data, at in CaptureReader(path):
                raw_bytes += len(data)
                stack.feed(data, at)
        decode = time.perf_counter() - started
        megabytes = raw_bytes / 1e6
        reports = stack.counters()["power_reports"]
        print(
            f"decode only: {megabytes:.0f} MB of bus bytes in {decode:.1f} s = {megabytes / decode:.1f} MB/s"
        )
        print(f"  (target >= 10 MB/s), {reports / decode:,.0f} power reports/s")

        influx = LocalInfluxDB(work / "influx")
        influx.start()
        try:
            lines_file = work / "points.lp"
            collector = FileWriter(lines_file)
            store = StateStore.open(work / "collect.db")
            settings = load_settings({}, environ={})
            Backfill(
                settings, store, collector, BackfillOptions(paths=[archive], batch_size=args.batch_size)
            ).run()
            collector.close()
            influx.create_database("direct")
            points, seconds = direct_upload(influx, "direct", lines_file, args.batch_size)
            direct_rate = points / seconds
            print(
                f"direct upload: {points:,} points in {seconds:.1f} s = {direct_rate:,.0f} points/s "
                f"(plain line protocol to influxd /write, batches of {args.batch_size})"
            )

            influx.create_database("backfill")
            environment = {
                **os.environ,
                "INFLUX_URL": influx.url,
                "INFLUX_TOKEN": "bench:bench",
                "INFLUX_ORG": "-",
                "INFLUX_BUCKET": "backfill",
            }
            started = time.perf_counter()
            completed = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "recorder.cli.app",
                    "backfill",
                    str(archive),
                    "--db",
                    str(work / "state.db"),
                    "--batch-size",
                    str(args.batch_size),
                ],
                capture_output=True,
                text=True,
                env=environment,
                cwd=ROOT,
                check=True,
            )
            elapsed = time.perf_counter() - started
            stored = influx.count("tigo_optimizer", "backfill", field="power")
            rate = stored / elapsed
            print(
                f"recorder backfill: {stored:,} points in {elapsed:.1f} s = {rate:,.0f} points/s "
                f"(whole command: start-up, decoding, v2 API through the front)"
            )
            print(f"  {completed.stdout.strip().splitlines()[0]}")
            print(f"ratio: {100 * rate / direct_rate:.0f} % of the direct upload (target >= 70 %)")
        finally:
            influx.stop()


if __name__ == "__main__":
    main()
