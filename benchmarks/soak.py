"""The soak (issue 19): simulated days of a whole installation, every fault a small box meets.

    python benchmarks/soak.py [--days 7] [--nodes 135] [--speed 300] [--seed 19]
                              [--fault-every 20] [--commit-interval 2] [--keep DIR]

A converter stand-in in this process plays the simulator's bus bytes over TCP on 127.0.0.1,
paced at `--speed`× real time, to `recorder run` (a child process), which writes to a throwaway
InfluxDB 1.6. The bytes go as a capture stream (`tcp://...?format=capture`, README "Sources"):
each chunk carries its simulated time, so the recorder places readings in simulated time at any
speed, exactly as it would have at 1× (its commit, watchdog and retry timers keep the real
clock). The recorder keeps its state database and raw archive on a real 32 MB tmpfs (this needs
root; without it the disk faults are left out, and the figures say so). Every `--fault-every` wall
seconds (seeded jitter) a fault is injected, each kind once per round in a seeded order:

* `influxdb restart`: influxd is stopped for 3-15 s, then started again;
* `tcp reset`: the converter resets the connection (RST) at a frame boundary;
* `tcp half-open`: the converter goes silent and keeps the connection open; the recorder's
  watchdog (`--watchdog-seconds 3`) notices and reconnects;
* `power cut`: the recorder is SIGKILLed and started again a second later;
* `disk fill`: a ballast file takes every free byte of the tmpfs for 5-20 s, then is deleted;

and the simulator replaces one optimizer (a new barcode on an old node ID) in the middle of the
run. While the recorder is down the converter waits (the bus clock stops); the chunk it still
sends into the dead connection before it notices is lost with the recorder's memory.

A lost report is blamed on a power cut when it reached the listener (the truth's
`reached_listener_at`, mapped to the wall clock by the converter's send marks) within
`--commit-interval` seconds before a SIGKILL, a second of slack each side: what the recorder
had received but neither committed nor had acknowledged (README, "Durability"). By arrival, not
by measurement: a report may wait in its gateway 45 s before it is sent (a rule by measurement
time once blamed such a report, lost to one kill, on nothing, and excused others lost long
after they arrived). A SIGKILL while the disk is full (from the fill until the recorder's first
retry after it is freed) may cost every arrival since the fill: counted apart, since the README
states no bound then. A power cut may also take what the bus said about identity, and when
that was the replaced optimizer's new node table entry, the recorder goes on writing the new
optimizer's reports under the old barcode until the controller lists its nodes again (the
protocol says it nowhere else): those are counted apart too ("identity lost": each report
lost, and each point under the old barcode after the change). Anything else lost is "outside
both" (target 0), and a point that matches no report is "doubled" (target 0).

At the end the run drains, and every report of the simulator's truth is looked for in InfluxDB
by gateway, node, barcode, values and measurement time (within a second: the slot clock's
precision; the largest difference is printed), at any speed.
Printed: simulated days, faults of each kind, points expected / written / lost (within the
bound of a power cut, to a power cut on a full disk, outside both) / doubled (a point whose
report was already written, or one with the wrong barcode), peak RSS, the outbox's and
memory's high-water marks, tracebacks.

`--keep DIR` works in DIR and keeps the recorder's log, the final disk (state database, archive)
and `lost.jsonl`: each lost report with its times, its cause and the faults and connection
events within 30 s of its arrival. A week takes tens of minutes: run it by hand;
`tests/test_soak.py` runs a short one (a few simulated hours of a small array, every fault).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recorder.capture import CaptureWriter  # noqa: E402
from recorder.diskspace import RETRY_EVERY  # noqa: E402
from recorder.sim.bus import BusSimulation  # noqa: E402
from recorder.sim.config import SimulationConfig  # noqa: E402
from recorder.sim.outputs import TruthWriter  # noqa: E402
from recorder.sim.truth import VALUE_FIELDS  # noqa: E402
from tests.influx import LocalInfluxDB, free_ports  # noqa: E402

FAULTS = ("influxdb restart", "tcp reset", "tcp half-open", "power cut", "disk fill")
START = datetime(2025, 6, 16, 8, 0, tzinfo=UTC)  # a morning: short runs see reports
# A point is its report when its time is this close to the report's true measurement time: the
# slot clock places a report within 1 % (a gateway's oscillator) of its wait in the gateway,
# at most 45 s (NOTES); one node reports every 20 s.
PLACEMENT_TOLERANCE_MS = 1000


# --- the converter ----------------------------------------------------------------------------------


class Converter:
    """Serves the simulation's bytes, paced, to the one connected client; misbehaves on request.

    The bus clock runs only while a client is connected and being served: a stall (no client, a
    half-open connection) shifts the pacing origin, so nothing is sent into a void and nothing
    arrives in a burst afterwards.
    """

    def __init__(self, config: SimulationConfig, speed: float, truth: Path, trace: bool = False) -> None:
        self.config = config
        self.speed = speed
        self.truth_path = truth
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(4)
        self.port: int = self._listener.getsockname()[1]
        self._client: socket.socket | None = None
        self._writer: CaptureWriter | None = None  # the client's capture stream
        self._buffer = _Buffer()
        self._silenced: list[socket.socket] = []
        self._lock = threading.Lock()
        self._connected = threading.Condition(self._lock)
        self._hold = threading.Event()  # set: do not send (a reset is being prepared)
        self.finished = threading.Event()
        # (simulated seconds, wall clock) of a chunk every half simulated second, and of the
        # chunks either side of every stall (no client, a reset, a half-open connection)
        self.sent: list[tuple[float, float]] = []
        self.connections = 0
        self.error: BaseException | None = None
        self.progress = time.monotonic()  # when a chunk was last sent
        # --keep: every chunk (simulated seconds, wall clock before and after, connection, sent)
        # and every connection event (wall clock, what), to explain each lost report
        self.trace: list[tuple[float, float, float, int, bool]] | None = [] if trace else None
        self.events: list[tuple[float, str]] = []
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._serve, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.settimeout(5)  # a client that stopped reading must not stop the bus
            with self._connected:
                if self._client is not None:
                    _close(self._client)
                self._client = client
                self._buffer = _Buffer()
                self._writer = CaptureWriter(self._buffer)  # each connection: a capture from its start
                self.connections += 1
                self.events.append((time.time(), f"connection {self.connections} accepted"))
                self._connected.notify_all()

    def _serve(self) -> None:
        truth = TruthWriter(self.truth_path)
        origin = time.monotonic()
        previous: tuple[float, float] | None = None  # the last chunk's (seconds, wall clock)
        try:
            for data, seconds in BusSimulation(self.config).run(truth):
                delay = origin + seconds / self.speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                stood_still = False
                while True:
                    stalled = time.monotonic()
                    with self._connected:
                        while self._client is None or self._hold.is_set():
                            self._connected.wait(0.1)
                        client = self._client
                        connection = self.connections
                        writer, buffer = self._writer, self._buffer
                    assert writer is not None
                    writer.write(data, START + timedelta(seconds=seconds))  # its simulated time
                    writer.flush()
                    record = buffer.take()
                    waited = time.monotonic() - stalled
                    origin += waited  # the bus clock stood still meanwhile
                    stood_still = stood_still or waited > 0.01
                    before = time.time()
                    try:
                        client.sendall(record)
                        if self.trace is not None:
                            self.trace.append((seconds, before, time.time(), connection, True))
                        break
                    except OSError as error:
                        stood_still = True
                        if self.trace is not None:
                            self.trace.append((seconds, before, time.time(), connection, False))
                        self.events.append((time.time(), f"connection {connection} send failed: {error}"))
                        with self._connected:
                            if self._client is client:
                                self._client = None
                        _close(client)
                sent_at = time.time()
                self.progress = time.monotonic()
                if stood_still:  # a mark on each side of the stall: `wall_time_of` never spans one
                    if previous is not None and (not self.sent or self.sent[-1][0] < previous[0]):
                        self.sent.append(previous)
                    self.sent.append((seconds, sent_at))
                elif not self.sent or seconds - self.sent[-1][0] >= 0.5:
                    self.sent.append((seconds, sent_at))
                previous = (seconds, sent_at)
        except BaseException as error:
            self.error = error
            raise
        finally:
            truth.close()
            if previous is not None and (not self.sent or self.sent[-1][0] < previous[0]):
                self.sent.append(previous)
            self.finished.set()

    def reset(self) -> None:
        """Close the connection with an RST, between two chunks, once the client has read all."""
        self._hold.set()
        time.sleep(0.5)  # the recorder reads what is in flight
        with self._connected:
            client, self._client = self._client, None
            self.events.append((time.time(), f"connection {self.connections} reset"))
        if client is not None:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
        self._hold.clear()

    def half_open(self) -> None:
        """Go silent on the connection but keep it open: only the recorder's watchdog helps."""
        with self._connected:
            client, self._client = self._client, None
            self.events.append((time.time(), f"connection {self.connections} half-open"))
        if client is not None:
            self._silenced.append(client)

    def wall_time_of(self, seconds: float) -> float | None:
        """When the chunk that ended at simulated second `seconds` was sent."""
        return wall_time_of(self.sent, seconds, self.speed)

    def close(self) -> None:
        self._listener.close()
        with self._connected:
            if self._client is not None:
                _close(self._client)
        for client in self._silenced:
            _close(client)


def wall_time_of(marks: list[tuple[float, float]], seconds: float, speed: float) -> float | None:
    """When the chunk that ended at simulated second `seconds` was sent, from the converter's
    marks `(simulated seconds, wall clock)`: between two marks the bus ran without a stall, at
    `speed`, so the time is the earlier mark's plus the simulated time since, never past the
    later mark's (to a millisecond: the truth's times are rounded to it)."""
    if not marks:
        return None
    index = bisect.bisect_right(marks, (seconds + 0.0005, float("inf"))) - 1
    if index < 0:
        return marks[0][1]
    mark_seconds, mark_wall = marks[index]
    wall = mark_wall + max(0.0, seconds - mark_seconds) / speed
    if index + 1 < len(marks):
        wall = min(wall, marks[index + 1][1])
    return wall


class _Buffer:
    """Where a connection's `CaptureWriter` writes: taken out and sent a chunk at a time."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes, /) -> int:
        self._parts.append(data)
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _close(client: socket.socket) -> None:
    with contextlib.suppress(OSError):
        client.close()


# --- the recorder -------------------------------------------------------------------------------------


@dataclass
class Recorder:
    """`recorder run` as a child process, restarted after each power cut."""

    arguments: list[str]
    env: dict[str, str]
    log: Path
    http_port: int
    process: subprocess.Popen[bytes] | None = None
    peak_rss_mb: float = 0.0
    kills: list[float] = field(default_factory=list)  # wall clock of each SIGKILL
    starts: int = 0
    started: list[float] = field(default_factory=list)  # wall clock of each start

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "recorder.cli.app", "run", *self.arguments],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=self.env,
                cwd=ROOT,
            )
        self.starts += 1
        self.started.append(time.time())

    def sample_rss(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_mb = max(self.peak_rss_mb, int(line.split()[1]) / 1024)

    def kill(self) -> None:
        assert self.process is not None
        self.sample_rss()
        self.process.send_signal(signal.SIGKILL)
        self.kills.append(time.time())
        self.process.wait()

    def stop(self) -> int:
        assert self.process is not None
        self.sample_rss()
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)

    def end(self) -> None:
        """Kill it if it still runs (after a failure)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def status(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/api/status", timeout=2) as reply:
                return json.loads(reply.read())["recorder"]  # type: ignore[no-any-return]
        except (OSError, ValueError, KeyError):
            return None


# --- the soak -----------------------------------------------------------------------------------------


@dataclass
class Figures:
    simulated_days: float = 0.0
    wall_seconds: float = 0.0
    speed: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)
    expected: int = 0
    written: int = 0
    lost_in_bound: int = 0
    lost_disk_full_power_cut: int = 0
    lost_outside_bound: int = 0
    doubled: int = 0
    lost_identity: int = 0  # a replacement's reports, its identity change lost to a power cut
    mistagged: int = 0  # ... and written under the old barcode instead
    placement_error_ms: int = 0
    peak_rss_mb: float = 0.0
    outbox_high_water: int = 0
    memory_high_water: int = 0
    dropped_disk_full: int = 0
    tracebacks: int = 0
    disk_faults: bool = True
    lost_examples: list[dict[str, Any]] = field(default_factory=list)

    def lines(self) -> list[str]:
        faults = ", ".join(f"{kind} {self.faults[kind]}" for kind in (*FAULTS, "optimizer replaced"))
        return [
            f"simulated days        {self.simulated_days:.2f} in {self.wall_seconds:.0f} s wall "
            f"(--speed {self.speed:g}x)",
            f"faults injected       {faults}"
            + ("" if self.disk_faults else " (no disk faults: cannot mount a tmpfs here)"),
            f"points expected       {self.expected}",
            f"points written        {self.written}",
            f"points lost           {self.lost_in_bound} within the bound of a power cut, "
            f"{self.lost_disk_full_power_cut} to a power cut on a full disk (no bound), "
            f"{self.lost_outside_bound} outside both",
            f"points doubled        {self.doubled}",
            f"identity lost         {self.lost_identity} reports of a replaced optimizer lost and "
            f"{self.mistagged} written under its old barcode: a power cut took its identity change",
            f"placement error       at most {self.placement_error_ms} ms (a point's time minus its "
            "report's true measurement time)",
            f"dropped (disk full)   {self.dropped_disk_full}",
            f"peak RSS              {self.peak_rss_mb:.0f} MB",
            f"outbox high water     {self.outbox_high_water} readings",
            f"memory high water     {self.memory_high_water} readings",
            f"tracebacks in the log {self.tracebacks}",
        ]


Key = tuple[Any, ...]  # gateway ID, node ID, barcode, the report's values


def _truth_keys(path: Path) -> dict[Key, list[tuple[int, float]]]:
    """Expected reports by key: each one's (measured, epoch ms; reached the listener, simulated
    seconds), in order."""
    expected: dict[Key, list[tuple[int, float]]] = {}
    start = START.timestamp()
    with path.open(encoding="utf-8") as stream:
        for line in stream:
            if '"power_report"' not in line:
                continue
            record = json.loads(line)
            if record["type"] != "power_report" or record["destroyed"]:
                continue
            key = (
                record["gateway_id"],
                record["node_id"],
                record["barcode"],
                *(record[n] for n in VALUE_FIELDS),
            )
            measured = round(datetime.fromisoformat(record["measured_at"]).timestamp() * 1000)
            arrived = datetime.fromisoformat(record["reached_listener_at"]).timestamp() - start
            expected.setdefault(key, []).append((measured, arrived))
    for reports in expected.values():
        reports.sort()
    return expected


def _written_keys(
    server: LocalInfluxDB, database: str, gateway_ids: dict[str, int], end: datetime
) -> dict[Key, list[int]]:
    """Points written by the same key as `_truth_keys`: their times (epoch ms), in order. A
    simulated day per query: a week's points in one answer would be gigabytes of JSON."""
    written: dict[Key, list[int]] = {}
    day = START - timedelta(days=1)  # a report measured before the start (it waited in its gateway)
    while day < end + timedelta(hours=1):
        following = day + timedelta(days=1)
        query = (
            "SELECT * FROM tigo_optimizer WHERE time >= "
            f"{int(day.timestamp()) * 10**9} AND time < {int(following.timestamp()) * 10**9}"
        )
        for point in server.query(query, database):
            gateway = point["gateway"]
            gateway_id = gateway_ids.get(gateway, int(gateway) if str(gateway).isdigit() else -1)
            key = (gateway_id, int(point["node_id"]), point.get("barcode"), *(point[n] for n in VALUE_FIELDS))
            written.setdefault(key, []).append(int(point["time"]))
        day = following
    for times in written.values():
        times.sort()
    return written


def match(
    expected: list[tuple[int, float]], written: list[int], tolerance_ms: int = PLACEMENT_TOLERANCE_MS
) -> tuple[list[tuple[int, float]], list[int], int]:
    """Pair one key's expected reports `(measured ms, arrived)` with its written points' times
    (both in order), a point within `tolerance_ms` of the report's measurement time. Returns the
    reports with no point, the times of the points that matched no report (doubled), and the
    largest difference of a matched pair. One node reports every 20 s, so no point is near two
    reports."""
    unmatched: list[tuple[int, float]] = []
    extra: list[int] = []
    worst = 0
    i = j = 0
    while i < len(expected) and j < len(written):
        measured, point = expected[i][0], written[j]
        if abs(point - measured) <= tolerance_ms:
            worst = max(worst, abs(point - measured))
            i += 1
            j += 1
        elif point < measured:
            extra.append(point)
            j += 1
        else:
            unmatched.append(expected[i])
            i += 1
    return unmatched + expected[i:], extra + written[j:], worst


def _replacements(path: Path) -> list[tuple[int, int, datetime, str, str]]:
    """The truth's identity changes after the start: (gateway, node, when, old and new barcode)."""
    barcodes: dict[tuple[int, int], str] = {}
    changes = []
    with path.open(encoding="utf-8") as stream:
        for line in stream:
            if '"mapping"' not in line:
                continue
            record = json.loads(line)
            node = (record["gateway_id"], record["node_id"])
            valid_from = datetime.fromisoformat(record["valid_from"])
            if node in barcodes and valid_from > START:
                changes.append((*node, valid_from, barcodes[node], record["barcode"]))
            barcodes[node] = record["barcode"]
    return changes


def _gateway_ids(path: Path) -> dict[str, int]:
    ids = {}
    with path.open(encoding="utf-8") as stream:
        for line in stream:
            if '"gateway"' in line:
                record = json.loads(line)
                if record["type"] == "gateway":
                    ids[record["barcode"]] = record["gateway_id"]
    return ids


@contextlib.contextmanager
def small_disk(directory: Path, size: str) -> Iterator[bool]:
    directory.mkdir(parents=True, exist_ok=True)
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], capture_output=True
        ).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted and subprocess.run(["umount", str(directory)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(directory)], capture_output=True)


def fill_up(directory: Path) -> Path:
    ballast = directory / "ballast"
    descriptor = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 20, 65536, 4096, 512):
            with contextlib.suppress(OSError):
                while True:
                    os.write(descriptor, b"\0" * size)
    finally:
        os.close(descriptor)
    return ballast


def soak(**options: Any) -> Figures:
    """Run the soak (see the module docstring); whatever happens, stop what it started."""
    with contextlib.ExitStack() as cleanup:
        return _soak(cleanup=cleanup, **options)


def _soak(
    *,
    cleanup: contextlib.ExitStack,
    days: float,
    nodes: int,
    speed: float,
    seed: int,
    fault_every: float,
    commit_interval: float,
    work: Path,
    say: Callable[[str], None] = print,
    keep: bool = False,
) -> Figures:
    figures = Figures(simulated_days=days, speed=speed)
    generator = random.Random(seed)
    influx = LocalInfluxDB(work / "influxdb")
    influx.start()
    cleanup.callback(influx.stop)
    database = "soak"
    influx.create_database(database)
    duration = timedelta(days=days)
    config = SimulationConfig(
        nodes=nodes,
        start=START,
        duration=duration,
        seed=seed,
        reassign=True,
        reassign_at=START + duration * generator.uniform(0.3, 0.7),
    ).validate()
    truth = work / "truth.jsonl"
    disk = work / "disk"
    began = time.monotonic()
    with small_disk(disk, "32m") as mounted:
        figures.disk_faults = mounted
        converter = Converter(config, speed, truth, trace=keep)
        (http_port,) = free_ports(1)
        recorder = Recorder(
            arguments=[
                "--db", str(disk / "state.db"),
                "--source", f"tcp://127.0.0.1:{converter.port}?format=capture",
                "--archive", str(disk / "archive"),
                "--commit-interval", str(commit_interval),
                "--watchdog-seconds", "3",
                "--http", f"127.0.0.1:{http_port}",
            ],
            env={
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "INFLUX_URL": influx.url,
                "INFLUX_TOKEN": "recorder:recorder",
                "INFLUX_ORG": "-",
                "INFLUX_BUCKET": database,
            },
            log=work / "recorder.log",
            http_port=http_port,
        )  # fmt: skip
        cleanup.callback(recorder.end)
        cleanup.callback(converter.close)
        recorder.start()
        restores: list[tuple[float, str, Callable[[], None]]] = []  # (when, what, undo)
        ballast: list[Path] = []
        fills: list[list[float]] = []  # wall clock of each disk fill and of its end
        fault_log: list[tuple[float, str]] = []
        rounds: list[str] = []
        next_fault = time.monotonic() + fault_every * generator.uniform(0.5, 1.5)
        kinds = [kind for kind in FAULTS if mounted or kind != "disk fill"]
        last_report = time.monotonic()
        while not converter.finished.is_set():
            now = time.monotonic()
            if now - converter.progress > 120:
                raise RuntimeError(f"the converter sent nothing for 2 minutes ({converter.error!r})")
            for item in [r for r in restores if r[0] <= now]:
                restores.remove(item)
                item[2]()
            if now >= next_fault:
                if not rounds:  # each kind once per round, in a seeded order
                    rounds = generator.sample(kinds, len(kinds))
                kind = rounds.pop()
                busy = {what for _, what, _ in restores}
                if kind not in busy:
                    figures.faults[kind] += 1
                    fault_log.append((time.time(), kind))
                    if kind == "influxdb restart":
                        influx.stop()
                        restores.append((now + generator.uniform(3, 15), kind, influx.start))
                    elif kind == "tcp reset":
                        converter.reset()
                    elif kind == "tcp half-open":
                        converter.half_open()
                    elif kind == "power cut":
                        recorder.kill()
                        restores.append((now + 1.0, kind, recorder.start))
                    elif kind == "disk fill":
                        ballast.append(fill_up(disk))
                        fills.append([time.time(), float("inf")])

                        def free() -> None:
                            ballast.pop().unlink()
                            fills[-1][1] = time.time()

                        restores.append((now + generator.uniform(5, 20), kind, free))
                next_fault = now + fault_every * generator.uniform(0.5, 1.5)
            status = recorder.status()
            if status is not None:
                outbox = status.get("outbox") or {}
                figures.outbox_high_water = max(
                    figures.outbox_high_water, (outbox.get("ready") or 0) + (outbox.get("held") or 0)
                )
                memory = (status.get("disk") or {}).get("readings_in_memory") or 0
                figures.memory_high_water = max(figures.memory_high_water, memory)
            recorder.sample_rss()
            if now - last_report >= 60:
                last_report = now
                simulated = converter.sent[-1][0] / 86400 if converter.sent else 0.0
                say(f"  ... {simulated:.2f} simulated days, faults so far: {dict(figures.faults)}")
            time.sleep(0.5)
        for _, _, undo in sorted(restores, key=lambda item: item[0]):
            undo()
        figures.faults["optimizer replaced"] = 1
        # Drain: the recorder writes everything it holds, then stops cleanly.
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline:
            status = recorder.status()
            if status is not None:
                outbox = status.get("outbox") or {}
                pending = (outbox.get("ready") or 0) + (
                    (status.get("disk") or {}).get("readings_in_memory") or 0
                )
                if pending == 0 and influx.running:
                    break
            time.sleep(1)
        else:
            say(f"  the recorder did not drain in 2 minutes: {json.dumps(status)[:2000]}")
        time.sleep(3)
        final = recorder.status() or {}
        figures.dropped_disk_full = (final.get("disk") or {}).get("readings_dropped") or 0
        recorder.stop()
        converter.close()
        if keep:  # the state database and the archive outlive the tmpfs
            shutil.copytree(disk, work / "disk-final", ignore=shutil.ignore_patterns("ballast"))
    figures.wall_seconds = time.monotonic() - began
    figures.peak_rss_mb = recorder.peak_rss_mb
    log_text = (work / "recorder.log").read_text(errors="replace")
    figures.tracebacks = log_text.count("Traceback")
    # Every report of the truth, looked for in InfluxDB.
    expected = _truth_keys(truth)
    diagnosis = (work / "lost.jsonl").open("w", encoding="utf-8") if keep else None
    written = _written_keys(influx, database, _gateway_ids(truth), config.end)
    influx.stop()
    figures.expected = sum(map(len, expected.values()))
    figures.written = sum(map(len, written.values()))
    # A replacement whose identity change reached the recorder when a power cut could take it
    # (on a full disk identity waits in memory like readings): until the controller lists its
    # nodes again, the new optimizer's reports are written under the old barcode.
    forgotten = {}  # (gateway, node) -> (the replacement's epoch ms, old barcode, new barcode)
    for change in _replacements(truth):
        at = converter.wall_time_of((change[2] - START).total_seconds())
        if loss_cause(at, recorder.kills, fills, commit_interval) is not None:
            forgotten[change[:2]] = (round(change[2].timestamp() * 1000), change[3], change[4])
    for key in expected.keys() | written.keys():
        lost, extra, worst = match(expected.get(key, []), written.get(key, []))
        change = forgotten.get(key[:2])
        if change is not None and key[2] == change[1]:  # under the old barcode after the change
            figures.mistagged += sum(1 for at in extra if at >= change[0])
            extra = [at for at in extra if at < change[0]]
        figures.doubled += len(extra)
        figures.placement_error_ms = max(figures.placement_error_ms, worst)
        for measured_ms, arrived in lost:
            measured = measured_ms / 1000 - START.timestamp()
            arrived_wall = converter.wall_time_of(arrived)
            cause = loss_cause(arrived_wall, recorder.kills, fills, commit_interval)
            if cause is None and change is not None and key[2] == change[2]:
                cause = "identity change lost to a power cut"
            if cause == "power cut":
                figures.lost_in_bound += 1
            elif cause == "power cut, disk full":
                figures.lost_disk_full_power_cut += 1
            elif cause is not None:
                figures.lost_identity += 1
            else:
                figures.lost_outside_bound += 1
            story = {
                "key": key,
                "measured_seconds": round(measured, 3),
                "arrived_seconds": round(arrived, 3),
                "measured_wall": converter.wall_time_of(measured),
                "arrived_wall": arrived_wall,
                "cause": cause,
                "faults": [
                    (round(when - (arrived_wall or 0.0), 3), what)
                    for when, what in [
                        *fault_log,
                        *converter.events,
                        *((kill, "SIGKILL") for kill in recorder.kills),
                        *((start, "recorder started") for start in recorder.started),
                    ]
                    if arrived_wall is not None and abs(when - arrived_wall) < 30
                ],
            }
            if converter.trace is not None:  # --keep: the chunk that carried it, and its connection
                first = bisect.bisect_left(converter.trace, (arrived - 0.001,))  # in order of seconds
                story["chunks"] = [
                    (chunk[0], round(chunk[1] - (arrived_wall or 0.0), 3), chunk[3], chunk[4])
                    for chunk in converter.trace[first : first + 20]
                    if abs(chunk[0] - arrived) < 0.001
                ]
            if cause is None and len(figures.lost_examples) < 5:
                figures.lost_examples.append(story)
            if diagnosis is not None:
                diagnosis.write(json.dumps(story, default=str) + "\n")
    if diagnosis is not None:
        diagnosis.close()
    return figures


def loss_cause(
    arrived: float | None, kills: list[float], fills: list[list[float]], commit_interval: float
) -> str | None:
    """Why a report that reached the listener at wall time `arrived` may be missing, if the
    recorder's stated guarantees allow it (README, "Durability"); None: they do not.

    What the recorder received but had neither committed nor had acknowledged by InfluxDB
    when it was SIGKILLed is lost: at most `commit_interval` seconds of arrivals, counted by
    arrival (its clock), not by measurement (a report may reach the bus 45 s after it was
    measured). A second of slack each side: the socket's buffers, and the chunk the converter
    still sends into the dead connection before it notices. While the disk is full nothing
    is committed and readings wait in memory (README: the bound does not hold), from the fill
    until the first retry after space returns: a SIGKILL then may cost every arrival since the
    fill began that InfluxDB had not taken.
    """
    if arrived is None:
        return None
    for kill in kills:
        if kill - commit_interval - 1.0 <= arrived <= kill + 1.0:
            return "power cut"
    for kill in kills:
        for filled, freed in fills:
            if (
                filled <= kill <= freed + RETRY_EVERY + 1.0
                and filled - commit_interval - 1.0 <= arrived <= kill + 1.0
            ):
                return "power cut, disk full"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=float, default=7.0, help="simulated days (default 7)")
    parser.add_argument("--nodes", type=int, default=135)
    parser.add_argument("--speed", type=float, default=300.0, help="× real time (default 300)")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--fault-every", type=float, default=20.0, help="wall seconds between faults")
    parser.add_argument("--commit-interval", type=float, default=2.0)
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="work in DIR and keep it: the recorder's log, its final disk, and lost.jsonl "
        "(each lost report with the faults and the converter's chunks around it)",
    )
    options = parser.parse_args()
    if options.keep is not None:
        options.keep.mkdir(parents=True, exist_ok=True)
    with (
        contextlib.nullcontext(str(options.keep))
        if options.keep is not None
        else tempfile.TemporaryDirectory(prefix="recorder-soak-")
    ) as work:
        print(
            f"soak: {options.days:g} simulated days of {options.nodes} optimizers at {options.speed:g}x, "
            f"a fault every ~{options.fault_every:g} s (seed {options.seed})"
        )
        figures = soak(
            days=options.days,
            nodes=options.nodes,
            speed=options.speed,
            seed=options.seed,
            fault_every=options.fault_every,
            commit_interval=options.commit_interval,
            work=Path(work),
            keep=options.keep is not None,
        )
        for line in figures.lines():
            print(line)
        for example in figures.lost_examples:
            print(f"  lost outside the bound: {example}")


if __name__ == "__main__":
    main()
