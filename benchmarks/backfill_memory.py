"""Peak memory of a backfill whose input never names its optimizers: 1 day against 7 days.

    python benchmarks/backfill_memory.py [--days 1 7] [--nodes 135] [--base DIR ...] [--rounds 1]
                                         [--keep DIR]

Simulates each period with no identity traffic at all (no node table, topology report or
enumeration is ever heard: `SimulationConfig(identity=False)`), as hourly archive files, and runs
`recorder backfill --dry-run` over each, in one process (`--no-read-ahead`, so the figure is the
decoder's own). Every reading then waits for a barcode until the input ends; the backfill keeps a
fixed number of them in memory and the rest in a scratch file (`recorder.backfill.held`), and forgets
de-duplication state older than any report can be (`recorder.placement`). Prints the peak RSS of
each run, and its speed (MB/s of bus bytes, wall and per CPU second): issue 14 wants the 7-day
run within 20 MB of the 1-day one.

`--base DIR` (repeatable) also runs other checkouts (e.g. `git worktree add DIR main`) on the same
archives, alternating with this one; `--rounds N` runs each N times (peak RSS: the highest;
speed: the best). `--keep DIR` keeps the simulated archives in DIR and reuses them next time
(a week takes several minutes to simulate).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.proc import run_recorder  # noqa: E402
from recorder.archive import Archive  # noqa: E402
from recorder.sim.bus import BusSimulation  # noqa: E402
from recorder.sim.config import SimulationConfig  # noqa: E402


def simulate(directory: Path, days: float, nodes: int) -> None:
    config = SimulationConfig(
        start=datetime.fromisoformat("2025-06-16T00:00:00+00:00"),
        duration=timedelta(days=days),
        nodes=nodes,
        seed=17,
        identity=False,
    )
    archive = Archive(directory, retention_days=0)
    for data, seconds in BusSimulation(config).run():
        archive.write(data, config.start + timedelta(seconds=seconds))
    archive.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=float, nargs="+", default=[1.0, 7.0])
    parser.add_argument("--nodes", type=int, default=135)
    parser.add_argument(
        "--base", type=Path, action="append", default=[], help="another checkout to run on the same archives"
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the simulated archives here")
    args = parser.parse_args()
    trees = [("this", ROOT)] + [
        ("base" if len(args.base) == 1 else f"base:{base}", base.resolve()) for base in args.base
    ]
    with tempfile.TemporaryDirectory(prefix="recorder-memory-bench-") as scratch:
        work = Path(scratch)
        peaks: dict[tuple[str, float], float] = {}
        for days in args.days:
            archive = (args.keep or work) / f"archive-{days:g}d-{args.nodes}"
            started = time.perf_counter()
            if not (archive / "complete").exists():
                simulate(archive, days, args.nodes)
                (archive / "complete").touch()
            size = sum(path.stat().st_size for path in archive.rglob("*.cap.gz"))
            print(
                f"simulated {days:g} day(s) x {args.nodes} optimizers with no identity traffic: "
                f"{size / 1e6:.0f} MB compressed, in {time.perf_counter() - started:.0f} s"
            )
            for round_number, (tree, root) in (
                (n, tree) for n in range(1, args.rounds + 1) for tree in trees
            ):
                arguments = [
                    "backfill",
                    str(archive),
                    "--dry-run",
                    "--no-read-ahead",
                    "--db",
                    str(work / "none.db"),
                ]
                finished = run_recorder(root, arguments)
                peaks[(tree, days)] = max(peaks.get((tree, days), 0.0), finished.peak_rss_mb)
                found = re.search(r"files, ([\d.]+) MB", finished.output)
                bus_mb = float(found.group(1)) if found else float("nan")
                print(
                    f"  round {round_number} {tree}: peak RSS {finished.peak_rss_mb:.0f} MB, "
                    f"{finished.seconds:.1f} s, {finished.cpu_seconds:.1f} CPU s; "
                    f"{bus_mb / finished.seconds:.2f} MB/s, {bus_mb / finished.cpu_seconds:.2f} MB per CPU s"
                )
                for line in finished.output.splitlines()[:2]:
                    print(f"    {line.strip()}")
        for tree, _ in trees:
            figures = ", ".join(f"{days:g} d: {peaks[(tree, days)]:.0f} MB" for days in args.days)
            spread = max(peaks[(tree, d)] for d in args.days) - min(peaks[(tree, d)] for d in args.days)
            print(f"{tree}: peak RSS {figures}; spread {spread:.0f} MB (target: within 20 MB)")


if __name__ == "__main__":
    main()
