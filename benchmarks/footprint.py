"""`recorder run` on a Raspberry Pi's budget: disk writes and memory, before and after, side by side.

    python benchmarks/footprint.py [--minutes 10] [--warm-up 90] [--nodes 135] [--base b421991]
                                   [--fresh] [--startup-rounds 9]

Three recorders run at the same time, each reading its own simulator over TCP at real time
(`recorder simulate --listen`, the same array and bytes, at midday so every optimizer reports):

* "before": the base revision, checked out with `git worktree add` into a temporary directory
  and run with PYTHONPATH pointing there (same virtual environment, same simulator). It only
  speaks the v2 write API, so it writes to a throwaway VictoriaMetrics (`/api/v2/write`);
* "after, v2 API": this checkout, to the same VictoriaMetrics (InfluxDB 2.x/3.x users' case:
  the write goes through influxdb-client);
* "after, v1 API": this checkout, to a throwaway InfluxDB 1.6 (what Debian and Raspberry Pi OS
  ship; `--influx-api auto` picks the native 1.x API, without influxdb-client).

All keep the raw archive, as the service does by default, and start on a state database
already at the schema head (a service restarting; `--fresh` starts on no database, which adds
Alembic's migration to the peak).

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
* peak RSS: VmHWM at the end of the window;
* points written per minute (from the recorder's own health), to show all recorded the same;
* and the fourth figure of issue 13, the start-up medians of `recorder --help`, `status` and
  `nodes list` before and after (`benchmarks/startup.py`'s `startup_medians`, timed after the
  recorders stopped).

The machine is shared with other work: CPU-bound figures would be noisy, these are not much
(bytes written and memory depend on the code, not on the load).

Targets from issue 13: <= 50 MB written per day without the archive (about 2,200 MB before),
<= 60 MB peak RSS (88 MB before, on a fresh database), start-up <= 0.25 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
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

from benchmarks.proc import peak_rss_mb, start_simulator, write_bytes  # noqa: E402
from benchmarks.startup import startup_medians  # noqa: E402
from tests.influx import LocalInfluxDB, LocalVictoriaMetrics  # noqa: E402

DAY = 86_400
MB = 1e6


@dataclass
class Figures:
    write_bytes_per_day: float  # everything the process wrote, archive included
    archive_bytes_per_day: float
    peak_rss_mb: float
    points_per_minute: float

    @property
    def database_bytes_per_day(self) -> float:
        """What the issue's target counts: the writes that are not the raw archive's own bytes."""
        return self.write_bytes_per_day - self.archive_bytes_per_day


@dataclass
class Variant:
    label: str
    code: Path  # what PYTHONPATH points at
    work: Path
    target: list[str]  # the InfluxDB flags
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


def start(variant: Variant, *, nodes: int, minutes: float, fresh: bool) -> None:
    variant.work.mkdir()
    db = variant.work / "state.db"
    if not fresh:
        subprocess.run(
            [sys.executable, "-m", "recorder.cli.app", "db", "upgrade", "--db", str(db)],
            cwd=variant.work,
            env=variant.environment,
            check=True,
            capture_output=True,
        )
    # The simulator is this checkout's for all: the same bytes for before and after.
    variant.simulator, port = start_simulator(speed="realtime", duration=f"{minutes}m", nodes=nodes)
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
            *variant.target,
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


def finish(variant: Variant, window: tuple[float, int], rss: float) -> Figures:
    assert variant.recorder is not None and variant.simulator is not None
    variant.recorder.send_signal(signal.SIGTERM)
    variant.recorder.wait(timeout=60)
    ran = time.monotonic() - variant.started
    variant.simulator.kill()
    variant.simulator.wait()
    seconds, written = window
    with sqlite3.connect(variant.work / "state.db") as connection:
        row = connection.execute("SELECT value FROM recorder_state WHERE key = 'health'").fetchone()
    points = json.loads(row[0]).get("points_written", 0) if row else 0
    return Figures(
        write_bytes_per_day=written * DAY / seconds,
        archive_bytes_per_day=directory_bytes(variant.work / "archive") * DAY / ran,
        peak_rss_mb=rss,
        points_per_minute=points * 60 / ran,
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
    parser.add_argument("--startup-rounds", type=int, default=9, help="0: do not time start-up")
    args = parser.parse_args()
    simulated_minutes = args.warm_up / 60 + args.minutes + 2  # outlives the window
    with tempfile.TemporaryDirectory(prefix="recorder-footprint-") as scratch_name:
        scratch = Path(scratch_name)
        influx = LocalInfluxDB(scratch / "influx")
        victoria = LocalVictoriaMetrics(scratch / "victoria")
        influx.start()
        victoria.start()
        try:
            influx.create_database("footprint")
            v1 = ["--influx-url", influx.url, "--influx-token", "bench:bench", "--influx-bucket", "footprint"]
            v2 = ["--influx-url", victoria.url, "--influx-token", "bench", "--influx-bucket", "footprint"]
            with base_checkout(args.base, scratch) as base:
                variants = [
                    Variant(f"before ({args.base})", base, scratch / "before", v2),
                    Variant("after, v2 API", ROOT, scratch / "after-v2", v2),
                    Variant("after, v1 API", ROOT, scratch / "after-v1", v1),
                ]
                for variant in variants:
                    start(variant, nodes=args.nodes, minutes=simulated_minutes, fresh=args.fresh)
                time.sleep(args.warm_up)  # start-up, first commits and saves: not the steady state
                opened = time.monotonic()
                at_open = [write_bytes(v.recorder.pid) for v in variants if v.recorder]
                time.sleep(args.minutes * 60)
                seconds = time.monotonic() - opened
                windows = [
                    (seconds, write_bytes(v.recorder.pid) - at_open[index])
                    for index, v in enumerate(variants)
                    if v.recorder
                ]
                peaks = [peak_rss_mb(v.recorder.pid) for v in variants if v.recorder]
                figures = [finish(v, windows[i], peaks[i]) for i, v in enumerate(variants)]
        finally:
            victoria.stop()
            influx.stop()
    # Start-up is timed once the recorders have stopped, so that they do not slow it down.
    startup = startup_medians(args.base, args.startup_rounds) if args.startup_rounds else None
    report([v.label for v in variants], figures, args, seconds, startup)


def report(
    labels: list[str],
    figures: list[Figures],
    args: argparse.Namespace,
    seconds: float,
    startup: dict[str, dict[str, float]] | None,
) -> None:
    start = "fresh state database" if args.fresh else "state database at the schema head"
    print(
        f"recorder run at real time, {args.nodes} optimizers at midday, {start}; "
        f"window {seconds:.0f} s after {args.warm_up:.0f} s of warm-up (shared machine)"
    )
    rows = [
        (
            "disk writes without the archive, MB/day",
            [f.database_bytes_per_day / MB for f in figures],
            "<= 50",
        ),
        ("raw archive's own bytes, MB/day", [f.archive_bytes_per_day / MB for f in figures], ""),
        ("all write_bytes, MB/day", [f.write_bytes_per_day / MB for f in figures], ""),
        ("peak RSS, MB", [f.peak_rss_mb for f in figures], "<= 60"),
        ("points written per minute", [f.points_per_minute for f in figures], ""),
    ]
    print(f"{'':42}" + "".join(f"{label:>18}" for label in labels) + f"{'target':>9}")
    for name, values, target in rows:
        print(f"{name:42}" + "".join(f"{value:>18.1f}" for value in values) + f"{target:>9}")
    if startup:  # the fourth figure, from benchmarks/startup.py
        print(f"start-up, median wall seconds of {args.startup_rounds} runs (benchmarks/startup.py):")
        for command, before in startup["before"].items():
            after = startup["after"][command]
            print(f"{'  ' + command:42}{before:>18.3f}{after:>18.3f}{'':>18}{'<= 0.25':>9}")


if __name__ == "__main__":
    main()
