"""`recorder run` on a Raspberry Pi's budget: disk writes and memory, before and after, side by side.

    python benchmarks/footprint.py [--minutes 10] [--warm-up 90] [--nodes 135] [--base b421991]

Two recorders run at the same time, each reading its own simulator over TCP at real time
(`recorder simulate --listen`, the same array and bytes, at midday so every optimizer reports)
and writing to its own database of one throwaway InfluxDB: "before" is the base revision,
checked out with `git worktree add` into a temporary directory and run with PYTHONPATH pointing
there (same virtual environment, same simulator); "after" is this checkout. Both keep the raw
archive, as the service does by default, and start on a state database already at the schema
head (a service restarting; `--fresh` starts on no database, which adds the migration's imports
to the peak).

Figures per recorder, from /proc for its process alone:

* disk writes per day: `write_bytes` (bytes the process caused to be written to the disk,
  counted when a page of the page cache becomes dirty) over a real-time window after the
  warm-up, scaled to a day, without the raw archive's own bytes, which are reported apart;
  midday traffic all day long, so an upper bound for a real day. The default window, ten
  minutes, holds what a day repeats: five status snapshots (every two minutes), one save of
  node activity (every ten minutes) and ten archive flushes (every minute). It sees no WAL
  checkpoint (every 1000 frames, hours apart after the change): a checkpoint copies the few
  distinct pages the WAL holds, a few tens of kB.
* raw archive bytes per day: the archive files' size after a clean stop over the run's time;
* peak RSS: VmHWM at the end of the window.

The machine is shared with other work: CPU-bound figures would be noisy, these are not much
(bytes written and memory depend on the code, not on the load).

Targets from issue 13: <= 50 MB written per day without the archive (about 2,200 MB before),
<= 60 MB peak RSS (88 MB before).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.proc import peak_rss_mb, write_bytes  # noqa: E402
from tests.influx import LocalInfluxDB  # noqa: E402

MIDDAY = "2025-06-21T11:00:00+00:00"
DAY = 86_400
MB = 1e6


@dataclass
class Figures:
    write_bytes_per_day: float  # everything the process wrote, archive included
    archive_bytes_per_day: float
    peak_rss_mb: float
    points_per_minute: float  # both recorders recorded the same traffic

    @property
    def database_bytes_per_day(self) -> float:
        """What the issue's target counts: the writes that are not the raw archive's own bytes."""
        return self.write_bytes_per_day - self.archive_bytes_per_day


@dataclass
class Variant:
    name: str
    code: Path  # what PYTHONPATH points at
    work: Path
    database: str
    simulator: subprocess.Popen[str] | None = None
    recorder: subprocess.Popen[str] | None = None
    started: float = 0.0

    @property
    def environment(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.code), "RECORDER_LOG_LEVEL": "WARNING"}


@contextmanager
def base_checkout(revision: str, scratch: Path) -> Iterator[Path]:
    """The base revision in a temporary git worktree, removed afterwards."""
    directory = scratch / "base"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(directory), revision],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    try:
        yield directory
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(directory)], cwd=ROOT, check=False)


def start(variant: Variant, influx: LocalInfluxDB, *, nodes: int, minutes: float, fresh: bool) -> None:
    influx.create_database(variant.database)
    db = variant.work / "state.db"
    if not fresh:
        subprocess.run(
            [sys.executable, "-m", "recorder.cli.app", "db", "upgrade", "--db", str(db)],
            cwd=variant.work,
            env=variant.environment,
            check=True,
            capture_output=True,
        )
    # The simulator is this checkout's for both: the same bytes for before and after.
    variant.simulator = subprocess.Popen(
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
            f"{minutes}m",
            "--nodes",
            str(nodes),
            "--start",
            MIDDAY,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert variant.simulator.stdout is not None
    port = variant.simulator.stdout.readline().strip().rsplit(":", 1)[1]
    variant.recorder = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recorder.cli.app",
            "run",
            "--db",
            str(db),
            "--source",
            f"tcp://127.0.0.1:{port}",
            "--archive",
            str(variant.work / "archive"),
            "--influx-url",
            influx.url,
            "--influx-token",
            "bench:bench",
            "--influx-bucket",
            variant.database,
        ],
        stdout=subprocess.DEVNULL,
        stderr=(variant.work / "recorder.log").open("w"),
        text=True,
        cwd=variant.work,
        env=variant.environment,
    )
    variant.started = time.monotonic()


def directory_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def finish(variant: Variant, influx: LocalInfluxDB, window: tuple[float, int], rss: float) -> Figures:
    assert variant.recorder is not None and variant.simulator is not None
    variant.recorder.send_signal(signal.SIGTERM)
    variant.recorder.wait(timeout=60)
    ran = time.monotonic() - variant.started
    variant.simulator.kill()
    variant.simulator.wait()
    seconds, written = window
    archive_per_day = directory_bytes(variant.work / "archive") * DAY / ran
    points = influx.query_series("SELECT count(power) FROM tigo_optimizer", variant.database)
    return Figures(
        write_bytes_per_day=written * DAY / seconds,
        archive_bytes_per_day=archive_per_day,
        peak_rss_mb=rss,
        points_per_minute=(points[0]["values"][0][1] if points else 0) * 60 / ran,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="measured real-time window")
    parser.add_argument("--warm-up", type=float, default=90.0, help="seconds before the window opens")
    parser.add_argument("--nodes", type=int, default=135)
    parser.add_argument("--base", default="b421991", help="the revision measured as 'before'")
    parser.add_argument("--fresh", action="store_true", help="start on no state database")
    args = parser.parse_args()
    simulated_minutes = args.warm_up / 60 + args.minutes + 2  # outlives the window
    with tempfile.TemporaryDirectory(prefix="recorder-footprint-") as scratch_name:
        scratch = Path(scratch_name)
        influx = LocalInfluxDB(scratch / "influx")
        influx.start()
        try:
            with base_checkout(args.base, scratch) as base:
                variants = [
                    Variant("before", base, scratch / "before", "footprint_before"),
                    Variant("after", ROOT, scratch / "after", "footprint_after"),
                ]
                for variant in variants:
                    variant.work.mkdir()
                    start(variant, influx, nodes=args.nodes, minutes=simulated_minutes, fresh=args.fresh)
                time.sleep(args.warm_up)  # start-up, first commits and saves: not the steady state
                opened = time.monotonic()
                at_open = {v.name: write_bytes(v.recorder.pid) for v in variants if v.recorder}
                time.sleep(args.minutes * 60)
                seconds = time.monotonic() - opened
                windows = {
                    v.name: (seconds, write_bytes(v.recorder.pid) - at_open[v.name])
                    for v in variants
                    if v.recorder
                }
                peaks = {v.name: peak_rss_mb(v.recorder.pid) for v in variants if v.recorder}
                figures = {v.name: finish(v, influx, windows[v.name], peaks[v.name]) for v in variants}
        finally:
            influx.stop()
    report(figures, args, seconds)


def report(figures: dict[str, Figures], args: argparse.Namespace, seconds: float) -> None:
    before, after = figures["before"], figures["after"]
    start = "fresh state database" if args.fresh else "state database at the schema head"
    print(
        f"recorder run at real time, {args.nodes} optimizers at midday, {start}; "
        f"window {seconds:.0f} s after {args.warm_up:.0f} s of warm-up (shared machine)"
    )
    rows = [
        (
            "disk writes without the archive, MB/day",
            before.database_bytes_per_day / MB,
            after.database_bytes_per_day / MB,
            "<= 50",
        ),
        (
            "raw archive's own bytes, MB/day",
            before.archive_bytes_per_day / MB,
            after.archive_bytes_per_day / MB,
            "",
        ),
        ("all write_bytes, MB/day", before.write_bytes_per_day / MB, after.write_bytes_per_day / MB, ""),
        ("peak RSS, MB", before.peak_rss_mb, after.peak_rss_mb, "<= 60"),
    ]
    print(f"{'':42}{'before (' + args.base + ')':>20}{'after':>12}{'target':>10}")
    for label, old, new, target in rows:
        print(f"{label:42}{old:>20.1f}{new:>12.1f}{target:>10}")
    # ---- Start-up medians (the fourth figure) ------------------------------------------
    # benchmarks/startup.py (another engineer's slice) provides a callable that measures the
    # read-only commands' start-up; the lead joins it here, with the same two code trees
    # (`base` and ROOT above), so that all four figures print side by side in one run.
    # ----------------------------------------------------------------------------------------------
    rates = f"{before.points_per_minute:>20.1f}{after.points_per_minute:>12.1f}"
    print(f"{'points written per minute':42}{rates}")


if __name__ == "__main__":
    main()
