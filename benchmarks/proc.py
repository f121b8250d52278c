"""What /proc says about a process the benchmarks started (Linux)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of `pid` and its live descendants (e.g. the backfill and its read-ahead child)."""
    total = cpu_seconds(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += tree_cpu_seconds(int(child))
    return total


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Finished:
    """A recorder command run to its end: wall and CPU seconds (its read-ahead child included),
    peak RSS, and what it printed (stdout; stderr too when asked for)."""

    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    output: str


def run_recorder(
    root: Path, arguments: list[str], *, keep_stdout: bool = True, env: dict[str, str] | None = None
) -> Finished:
    """`recorder ARGUMENTS` from the checkout at `root` (this Python, its packages), measured.
    `keep_stdout=False` throws stdout away (e.g. `observe`'s JSON lines) and keeps stderr."""
    command = [sys.executable, "-m", "recorder.cli.app", *arguments]
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            stdout=output if keep_stdout else subprocess.DEVNULL,
            stderr=subprocess.DEVNULL if keep_stdout else output,
            env={**os.environ, **(env or {}), "PYTHONPATH": str(root)},
            cwd=root,
        )
        _, status, usage = os.wait4(process.pid, 0)  # usage includes its reaped children
        elapsed = time.perf_counter() - started
        output.seek(0)
        text = output.read().decode().strip()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"recorder {' '.join(arguments)} failed in {root}: {text[-2000:]}")
    return Finished(elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, text)


def write_bytes(pid: int) -> int:
    """Bytes the process caused to be written to storage (page cache pages it dirtied)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise ValueError(f"no write_bytes in /proc/{pid}/io")


MIDDAY = "2025-06-21T11:00:00+00:00"  # every optimizer reports: the live benchmarks' start


def start_simulator(
    *extra: str, speed: str, duration: str, nodes: int, start: str = MIDDAY
) -> tuple[subprocess.Popen[str], int]:
    """A converter stand-in: `recorder simulate --listen` (this checkout's, for every variant a
    benchmark compares, so all read the same bytes) on a free loopback port, with `extra`
    simulate options; returns the process and its port."""
    simulator = subprocess.Popen(
        [
            *(sys.executable, "-m", "recorder.cli.app", "simulate", "--listen", "tcp://127.0.0.1:0"),
            *("--speed", speed, "--duration", duration, "--nodes", str(nodes), "--start", start),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert simulator.stdout is not None
    return simulator, int(simulator.stdout.readline().strip().rsplit(":", 1)[1])
