"""`recorder observe` and `recorder backfill --dry-run` on the polling stream, as a user runs them.

    python benchmarks/commands.py [--megabytes 20] [--rounds 3] [--base DIR ...] [--no-identity]

Builds `benchmarks/decode.py`'s polling traffic (~20 MB, one power report every few polls),
writes it as a capture file stamped at the bus's line rate, then times the two commands that
decode it end to end (start-up included): `observe` printing its JSON lines to /dev/null, and
`backfill --dry-run` (decoding and points, nothing written), once as it chooses (the read-ahead
child runs for inputs this large when InfluxDB is not on this machine, as in a dry run) and once
in one process. Prints MB/s of bus bytes and the CPU seconds of the command (with its read-ahead
child) per MB.

`--no-identity` leaves the node tables out of the stream: no node is ever identified, so every
reading of the backfill waits for a barcode (in memory up to a bound, then in a scratch file) and
goes out without one at the end.

`--base DIR` (repeatable) also times other checkouts of the recorder (e.g. `git worktree add DIR main`), run
with this Python and its packages, alternating with this one round by round: before/after figures
from the same minutes of a machine whose speed drifts.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.decode import build_stream  # noqa: E402
from benchmarks.proc import run_recorder  # noqa: E402
from recorder.capture import CaptureWriter  # noqa: E402

LINE_RATE = 3840  # bytes per second at 38400 baud, 8N1
CHUNK = 4096  # what a serial or TCP read returns


def write_capture(path: Path, stream: bytes) -> None:
    start = datetime(2025, 6, 21, 12, tzinfo=UTC)
    with path.open("wb") as file:
        writer = CaptureWriter(file)
        for offset in range(0, len(stream), CHUNK):
            writer.write(stream[offset : offset + CHUNK], start + timedelta(seconds=offset / LINE_RATE))
        writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--megabytes", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--base", type=Path, action="append", default=[], help="another checkout to time alongside this one"
    )
    parser.add_argument("--no-identity", dest="identity", action="store_false", help="no node tables")
    args = parser.parse_args()
    trees = [("this", ROOT)] + [
        ("base" if len(args.base) == 1 else f"base{index}", base.resolve())
        for index, base in enumerate(args.base, 1)
    ]
    for name, root in trees[1:]:
        print(f"{name}: {root}")
    with tempfile.TemporaryDirectory(prefix="recorder-commands-bench-") as scratch:
        work = Path(scratch)
        stream = build_stream(int(args.megabytes * 1_000_000), identity=args.identity)
        capture = work / "polling.cap.gz"
        write_capture(capture, stream)
        megabytes = len(stream) / 1e6
        print(
            f"{megabytes:.1f} MB of polling traffic in {capture.stat().st_size / 1e6:.1f} MB of capture file"
        )
        commands = {
            "observe": ["observe", "--source", f"capture:{capture}"],
            "backfill --dry-run": ["backfill", str(capture), "--dry-run", "--db", str(work / "none.db")],
            "backfill --dry-run --no-read-ahead": [
                "backfill",
                str(capture),
                "--dry-run",
                "--no-read-ahead",
                "--db",
                str(work / "none.db"),
            ],
        }
        best: dict[tuple[str, str], tuple[float, float]] = {}
        for round_number in range(1, args.rounds + 1):
            for name, arguments in commands.items():
                for tree, root in trees:
                    finished = run_recorder(root, arguments, keep_stdout=name != "observe")
                    seconds, cpu = finished.seconds, finished.cpu_seconds
                    line = finished.output.splitlines()[0] if finished.output else ""
                    rate = megabytes / seconds
                    print(
                        f"round {round_number} {tree:4} {name:34} {rate:5.1f} MB/s  "
                        f"{cpu / megabytes:.3f} CPU s/MB  ({seconds:.1f} s; {line[:90]})"
                    )
                    previous = best.get((tree, name))
                    best[(tree, name)] = (
                        (max(previous[0], rate), min(previous[1], cpu / megabytes))
                        if previous
                        else (rate, cpu / megabytes)
                    )
        for name in commands:
            text = "  ".join(
                f"{tree} {best[(tree, name)][0]:.1f} MB/s, {best[(tree, name)][1]:.3f} CPU s/MB"
                for tree, _ in trees
            )
            print(f"best of {args.rounds}, {name}: {text}")
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
