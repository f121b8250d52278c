"""Backfill speed against a real InfluxDB, compared with the most direct upload it accepts.

    python benchmarks/backfill.py [--days 7] [--nodes 135] [--batch-size 20000] [--rounds 2] [--base DIR]

1. Simulates the period (135 optimizers by default) into an archive of hourly capture files,
   as `recorder run` keeps them.
2. Decode only: the canonical protocol stack over all archived bytes (MB/s and power reports/s;
   issue "Protocol stack" set >= 10 MB/s on `benchmarks/decode.py`'s polling traffic, which
   carries far fewer reports per byte than this archive).
3. Direct upload: the same points as plain line protocol, POSTed in batches of the same size
   straight to influxd's own /write endpoint over one keep-alive connection: the fastest way to
   put these points into this server, with no decoding at all.
4. `recorder backfill` of the archive into a fresh database, through the native 1.x /write API
   (`--influx-api auto` picks it from influxd's /ping, as for a user's InfluxDB 1.x), start-up and
   decoding included: once in one process and once with the read-ahead child
   (`--no-read-ahead` / `--read-ahead`).
5. Both variants as `--dry-run`: decoding with no database to share the cores with.

Steps 3 and 4 alternate for `--rounds` rounds, each into a fresh database and each after
influxd has gone idle (its compactions from the previous step would otherwise bill the next
one); this machine's speed drifts by 10-20 % over minutes, so one round can mislead. For each
step it prints points/s and the CPU each process spent per point (influxd, and the recorder
with its read-ahead child), which shows who the limit is. Target: the backfill reaches >= 70 %
of the direct upload.

`--base DIR` backs the week up with another checkout too (e.g. `git worktree add DIR main`, run
with this Python and its packages) in the same rounds: before/after figures from the same minutes.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
# In one process (the default with InfluxDB on the same two cores) and with the read-ahead child.
VARIANTS = [("one process", "--no-read-ahead"), ("read-ahead child", "--read-ahead")]
sys.path.insert(0, str(ROOT))

from benchmarks.proc import cpu_seconds, run_recorder  # noqa: E402
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
        if lines:  # an empty write is the backfill's check that the destination is usable
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


def settle(pid: int, limit: float = 90.0) -> None:
    """Wait until influxd has used under 5 % of a core for a whole second (compactions done)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(1.0)
        if cpu_seconds(pid) - before < 0.05:
            return


def timed_backfill(
    influx: LocalInfluxDB, database: str, root: Path, archive: Path, state: Path, batch_size: int, *extra: str
) -> tuple[str, float, float]:
    """(first summary line, wall seconds, CPU seconds of the recorder and its read-ahead child) of
    `recorder backfill` from the checkout at `root`."""
    environment = {
        "INFLUX_URL": influx.url,
        "INFLUX_TOKEN": "bench:bench",
        "INFLUX_ORG": "-",
        "INFLUX_BUCKET": database,
    }
    arguments = ["backfill", str(archive), "--db", str(state), "--batch-size", str(batch_size), *extra]
    finished = run_recorder(root, arguments, env=environment)
    return finished.output.splitlines()[0], finished.seconds, finished.cpu_seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--nodes", type=int, default=135)
    parser.add_argument("--batch-size", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--base", type=Path, help="also back the week up with another checkout (before/after, same rounds)"
    )
    args = parser.parse_args()
    variants = [(name, ROOT, extra) for name, extra in VARIANTS]
    if args.base:
        variants += [(f"base, {name}", args.base.resolve(), extra) for name, extra in VARIANTS]
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
        reports = stack.counters.application.power_reports
        print(
            f"decode only: {megabytes:.0f} MB of bus bytes in {decode:.1f} s = {megabytes / decode:.1f} MB/s"
        )
        print(
            f"  {reports / decode:,.0f} power reports/s, {raw_bytes / max(reports, 1):.0f} bus bytes per "
            f"report (the >= 10 MB/s target is for benchmarks/decode.py's polling traffic; an array "
            f"in daylight carries a report every ~50 bytes, so fewer MB/s mean more reports/s)"
        )

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
            assert influx.influxd_pid is not None
            direct_rates: list[float] = []
            backfill_rates: dict[str, list[float]] = {}
            for round_number in range(1, args.rounds + 1):
                settle(influx.influxd_pid)
                database = f"direct{round_number}"
                influx.create_database(database)
                influxd_before = cpu_seconds(influx.influxd_pid)
                points, seconds = direct_upload(influx, database, lines_file, args.batch_size)
                influxd_cpu = cpu_seconds(influx.influxd_pid) - influxd_before
                direct_rates.append(points / seconds)
                print(
                    f"round {round_number} direct upload: {points:,} points in {seconds:.1f} s = "
                    f"{points / seconds:,.0f} points/s (plain line protocol to influxd /write, batches "
                    f"of {args.batch_size}); influxd {1e6 * influxd_cpu / points:.1f} us CPU/point"
                )

                for number, (variant, root, extra) in enumerate(variants):
                    settle(influx.influxd_pid)
                    database = f"backfill{round_number}_{number}"  # fresh each time
                    influx.create_database(database)
                    influxd_before = cpu_seconds(influx.influxd_pid)
                    state = work / f"state{round_number}_{number}.db"
                    first_line, seconds, recorder_cpu = timed_backfill(
                        influx, database, root, archive, state, args.batch_size, extra
                    )
                    influxd_cpu = cpu_seconds(influx.influxd_pid) - influxd_before
                    stored = influx.count("tigo_optimizer", database, field="power")
                    backfill_rates.setdefault(variant, []).append(stored / seconds)
                    print(
                        f"round {round_number} recorder backfill, {variant}: {stored:,} points in "
                        f"{seconds:.1f} s = {stored / seconds:,.0f} points/s (whole command: start-up, "
                        f"decoding, native 1.x /write API); influxd {1e6 * influxd_cpu / stored:.1f} us "
                        f"CPU/point, recorder {1e6 * recorder_cpu / stored:.1f} us CPU/point"
                    )
                    print(f"  {first_line}")
                    print(f"  ratio this round: {100 * stored / seconds / direct_rates[-1]:.0f} %")
            for number, (variant, root, extra) in enumerate(variants):
                arguments = [
                    "backfill",
                    str(archive),
                    "--dry-run",
                    "--db",
                    str(work / f"dry{number}.db"),
                    extra,
                ]
                done = run_recorder(root, arguments)
                print(
                    f"no database (--dry-run: InfluxDB elsewhere, infinitely fast), {variant}: "
                    f"{done.output.splitlines()[0]}; whole command {done.seconds:.1f} s, "
                    f"{1e6 * done.cpu_seconds / stored:.1f} us CPU/point"
                )
            best_direct = max(direct_rates)
            for variant, rates in backfill_rates.items():
                print(
                    f"best of {args.rounds}, {variant}: direct {best_direct:,.0f} points/s, backfill "
                    f"{max(rates):,.0f} points/s, ratio {100 * max(rates) / best_direct:.0f} % "
                    f"(target >= 70 %); machine: {os.cpu_count()} cores"
                )
        finally:
            influx.stop()


if __name__ == "__main__":
    main()
