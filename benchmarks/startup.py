"""Start-up time of the commands a person types: `recorder --help`, `status`, `nodes list`.

    python benchmarks/startup.py [--before REV] [--rounds 9]

Measures the wall-clock time from starting `recorder ...` (the virtual environment's console
script, as a user runs it) to its exit, and the CPU time the process used (user + system: on a
machine shared with other work, the steadier of the two), for this tree ("after") and for a base git revision
("before", default: the merge-base with main), in the same run, alternating between the two
each round so that a busy machine slows both alike. The base revision is checked out with
`git worktree add` into a temporary directory and run with PYTHONPATH pointing there (same
virtual environment, same Python); the worktree is removed afterwards.

`status` and `nodes list` read a realistic state database: 135 optimizers, health saved by
`recorder run`, readings waiting in the outbox (InfluxDB deliberately unreachable), made once
by this tree before timing.

Target (issue 13): <= 0.25 s for each on this machine. The medians depend on the machine's
load: read them side by side, not against another day's figures.

Other benchmarks can call `startup_medians()` and print its figures beside their own.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORDER = Path(sys.executable).parent / "recorder"
DEFAULT_BASE = "b421991"  # merge-base with main when this benchmark was written
TARGET_SECONDS = 0.25

COMMANDS: dict[str, list[str]] = {
    "recorder --help": ["--help"],
    "recorder status": ["status", "--db", "{db}"],
    "recorder nodes list": ["nodes", "list", "--db", "{db}"],
}


def merge_base() -> str:
    """The commit this branch forked from main, else the documented default."""
    completed = subprocess.run(
        ["git", "-C", str(ROOT), "merge-base", "HEAD", "main"], capture_output=True, text=True
    )
    return (
        completed.stdout.strip() if completed.returncode == 0 and completed.stdout.strip() else DEFAULT_BASE
    )


@contextlib.contextmanager
def checked_out(revision: str) -> Iterator[Path]:
    """A temporary `git worktree` of `revision`, removed on exit."""
    scratch = Path(tempfile.mkdtemp(prefix="recorder-startup-"))
    tree = scratch / "tree"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(tree), revision],
        check=True,
    )
    try:
        yield tree
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
        with contextlib.suppress(OSError):
            scratch.rmdir()


def _environment(tree: Path, home: Path) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("RECORDER_")}
    environment.update(PYTHONPATH=str(tree), HOME=str(home), PYTHONDONTWRITEBYTECODE="")
    environment.pop("XDG_CONFIG_HOME", None)
    return environment


def make_database(path: Path) -> None:
    """A state database as a running service leaves it (made by this tree)."""
    source = "sim:?nodes=135&duration=15m&start=2025-06-21T11:00:00%2B00:00&seed=3"
    subprocess.run(
        [str(RECORDER), "run", "--db", str(path), "--source", source, "--archive-days", "0"],
        env={**_environment(ROOT, path.parent), "RECORDER_INFLUX_URL": "http://127.0.0.1:9"},
        cwd=path.parent,
        check=True,
        capture_output=True,
        timeout=300,
    )


def time_command(tree: Path, arguments: Sequence[str], home: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of `recorder ARGUMENTS` from `tree`."""
    environment = _environment(tree, home)
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([str(RECORDER), *arguments], env=environment, cwd=home, capture_output=True, check=False)
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return wall, cpu


def _which_recorder(tree: Path, home: Path) -> Path:
    """The package a tree's runs import (to be sure PYTHONPATH wins over the editable install)."""
    completed = subprocess.run(
        [sys.executable, "-c", "import recorder; print(recorder.__file__)"],
        env=_environment(tree, home),
        cwd=home,
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(completed.stdout.strip()).parent.parent


Samples = dict[str, dict[str, list[tuple[float, float]]]]  # tree -> command -> [(wall, cpu)]


def measure(
    before: str | None = None, rounds: int = 9, commands: dict[str, list[str]] | None = None
) -> Samples:
    """Every (wall, CPU) sample: {"before": {command: [...]}, "after": {...}}."""
    commands = commands or COMMANDS
    revision = before or merge_base()
    with (
        tempfile.TemporaryDirectory(prefix="recorder-startup-data-") as scratch,
        checked_out(revision) as base,
    ):
        home = Path(scratch)
        database = home / "state.db"
        make_database(database)
        trees = {"before": base, "after": ROOT}
        for name, tree in trees.items():
            found = _which_recorder(tree, home)
            if found.resolve() != tree.resolve():
                raise SystemExit(f"{name}: imports the recorder from {found}, not {tree}")
        samples: Samples = {name: {label: [] for label in commands} for name in trees}
        for tree in trees.values():  # warm the file cache (and write .pyc files) once
            for arguments in commands.values():
                time_command(tree, [part.format(db=database) for part in arguments], home)
        for _ in range(rounds):
            for name, tree in trees.items():
                for label, arguments in commands.items():
                    samples[name][label].append(
                        time_command(tree, [part.format(db=database) for part in arguments], home)
                    )
    return samples


def medians(samples: Samples, *, cpu: bool = False) -> dict[str, dict[str, float]]:
    index = 1 if cpu else 0
    return {
        name: {
            label: statistics.median(value[index] for value in values) for label, values in by_label.items()
        }
        for name, by_label in samples.items()
    }


def startup_medians(
    before: str | None = None,
    rounds: int = 9,
    commands: dict[str, list[str]] | None = None,
    *,
    cpu: bool = False,
) -> dict[str, dict[str, float]]:
    """Median wall seconds (CPU seconds with `cpu=True`) per command:
    {"before": {command: s}, "after": {command: s}} (see the module docstring)."""
    return medians(measure(before, rounds, commands), cpu=cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--before", help=f"base revision (default: merge-base with main, else {DEFAULT_BASE})"
    )
    parser.add_argument("--rounds", type=int, default=9)
    arguments = parser.parse_args()
    revision = arguments.before or merge_base()
    print(f"start-up, median of {arguments.rounds} runs each; before = {revision}, after = this tree")
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    samples = measure(revision, arguments.rounds)
    wall, cpu = medians(samples), medians(samples, cpu=True)
    print(f"{'command':<22}{'wall before':>12}{'wall after':>12}{'cpu before':>12}{'cpu after':>12}  target")
    for label in COMMANDS:
        verdict = "ok" if wall["after"][label] <= TARGET_SECONDS else "over"
        print(
            f"{label:<22}{wall['before'][label]:>11.3f}s{wall['after'][label]:>11.3f}s"
            f"{cpu['before'][label]:>11.3f}s{cpu['after'][label]:>11.3f}s"
            f"  {TARGET_SECONDS:.2f} s wall: {verdict}"
        )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
