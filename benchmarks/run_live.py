"""`recorder run` live: CPU, memory and latency against a real InfluxDB.

    python benchmarks/run_live.py [--realtime-minutes 5] [--hours 24] [--speed 60] [--nodes 135]
                                  [--base DIR]

A simulator process plays a converter (`recorder simulate --listen`) and `recorder run` reads it
over TCP and writes to a throwaway InfluxDB 1.6 (its native 1.x /write API, as in the tests). Two
phases, each a fresh recorder:

1. real time for a few minutes: CPU use as a share of one core, measured directly;
2. `--speed`× real time for `--hours` simulated hours: CPU seconds per simulated hour, peak RSS,
   and p50/p99 latency from a report's last byte arriving to InfluxDB acknowledging its point
   (the recorder's own probe, reported in its health).

The recorder's CPU and memory come from /proc for its process alone (the simulator is another
process).

At N× speed InfluxDB ends up with slightly fewer points than readings, with the outbox empty:
the recorder stamps bytes with the wall clock while the gateway's slot counters (5 ms each) run
N× faster, so measurement times are compressed too and, now and then, two reports of one node a
slot cycle (240 s simulated) apart land on the same millisecond and InfluxDB keeps one.
Decoding the run's own archive shows exactly those pairs; at real time the counts agree.

Targets from issue "recorder run": < 1 % of one core at real time, RSS < 100 MB,
p99 < 2 s. `--base DIR` also runs the real-time phase with another checkout's recorder (e.g.
`git worktree add DIR main`); `--hours 0` skips the fast phase.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.proc import MIDDAY, cpu_seconds, peak_rss_mb, start_simulator  # noqa: E402
from tests.influx import LocalInfluxDB  # noqa: E402

MIDNIGHT = "2025-06-21T00:00:00+00:00"


def phase(
    influx: LocalInfluxDB,
    work: Path,
    name: str,
    *,
    speed: float,
    hours: float,
    nodes: int,
    start: str,
    root: Path = ROOT,
) -> dict[str, float]:
    """One simulator (this checkout) into one recorder run from the checkout at `root`."""
    database = f"bench_{name}"
    influx.create_database(database)
    simulator, port = start_simulator(speed=f"{speed}x", duration=f"{hours}h", nodes=nodes, start=start)
    db = work / f"{name}.db"
    environment = {
        **os.environ,
        "INFLUX_URL": influx.url,
        "INFLUX_TOKEN": "bench:bench",
        "INFLUX_ORG": "-",
        "INFLUX_BUCKET": database,
        "RECORDER_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(root),
    }
    recorder = subprocess.Popen(
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
            str(work / f"{name}-archive"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=root,
        env=environment,
    )
    time.sleep(10)  # imports and start-up are not what we measure
    started, cpu_at_start = time.monotonic(), cpu_seconds(recorder.pid)
    simulator.wait()
    time.sleep(3)  # the last readings go out
    elapsed = time.monotonic() - started
    cpu = cpu_seconds(recorder.pid) - cpu_at_start
    rss = peak_rss_mb(recorder.pid)
    recorder.send_signal(signal.SIGTERM)
    recorder.wait(timeout=30)
    with sqlite3.connect(db) as connection:
        health = json.loads(
            connection.execute("SELECT value FROM recorder_state WHERE key='health'").fetchone()[0]
        )
        outbox = dict(connection.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
        parked = connection.execute("SELECT count(*) FROM parked_points").fetchone()[0]
    points = influx.query_series("SELECT count(power) FROM tigo_optimizer", database)
    stored = points[0]["values"][0][1] if points else 0
    return {
        "wall": elapsed,
        "cpu": cpu,
        "rss": rss,
        "points": stored,
        "readings": health.get("readings", 0),
        "p50": health.get("latency_p50_ms", float("nan")),
        "p99": health.get("latency_p99_ms", float("nan")),
        "outbox_ready": outbox.get("ready", 0),
        "outbox_held": outbox.get("held", 0),
        "parked": parked,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--realtime-minutes", type=float, default=5.0)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--speed", type=float, default=60.0)
    parser.add_argument("--nodes", type=int, default=135)
    parser.add_argument("--start", default=MIDNIGHT, help="simulated start of the fast phase")
    parser.add_argument("--base", type=Path, help="also time the real-time phase with another checkout")
    args = parser.parse_args()
    trees = [("this", ROOT)] + ([("base", args.base.resolve())] if args.base else [])
    with tempfile.TemporaryDirectory(prefix="recorder-bench-") as scratch:
        work = Path(scratch)
        influx = LocalInfluxDB(work / "influx")
        influx.start()
        try:
            for tree, root in trees if args.realtime_minutes > 0 else []:
                # Midday, so the array is producing (at night the bus carries only polls).
                hours = args.realtime_minutes / 60
                real = phase(
                    influx,
                    work,
                    f"realtime_{tree}",
                    speed=1.0,
                    hours=hours,
                    nodes=args.nodes,
                    start=MIDDAY,
                    root=root,
                )
                share = 100 * real["cpu"] / real["wall"]
                print(f"{tree}: real time, {args.nodes} optimizers, {real['wall']:.0f} s measured:")
                print(f"  recorder CPU {real['cpu']:.2f} s = {share:.2f} % of one core (target < 1 %)")
                print(
                    f"  peak RSS {real['rss']:.0f} MB, {real['readings']} readings, {real['points']} points"
                )
            if args.hours <= 0:
                return
            fast = phase(
                influx, work, "fast", speed=args.speed, hours=args.hours, nodes=args.nodes, start=args.start
            )
            print(f"{args.speed:g}x real time, {args.hours:g} simulated hours, {args.nodes} optimizers:")
            print(
                f"  {fast['readings']} readings, {fast['points']} points in InfluxDB; after SIGTERM the "
                f"outbox holds {fast['outbox_ready']} ready + {fast['outbox_held']} held, "
                f"{fast['parked']} parked"
            )
            if args.speed != 1:
                print("  (fewer points than readings at N x speed: compressed time, see the docstring)")
            print(
                f"  CPU: {fast['cpu']:.1f} s = {fast['cpu'] / args.hours:.2f} CPU seconds per simulated hour"
            )
            print(f"  peak RSS: {fast['rss']:.0f} MB (target < 100 MB)")
            latency = f"p50 {fast['p50']} ms, p99 {fast['p99']} ms"
            print(f"  latency report -> queryable: {latency} (target p99 < 2000 ms)")
        finally:
            influx.stop()


if __name__ == "__main__":
    main()
