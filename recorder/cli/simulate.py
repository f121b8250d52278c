"""`recorder simulate`: realistic Tigo bus traffic with ground truth, no hardware needed."""

from __future__ import annotations

import signal
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import typer

from recorder.cli.common import check_output_path, parse_datetime
from recorder.durations import parse_duration
from recorder.errors import UsageError
from recorder.sim.config import DEFAULT_START, SimulationConfig, parse_silence, parse_speed

if TYPE_CHECKING:
    from recorder.sim.outputs import TcpBroadcastServer


def simulate(
    out: Path | None = typer.Option(
        None, "--out", help="Write a capture file (taptap format, gzip).", metavar="FILE"
    ),
    raw: Path | None = typer.Option(None, "--raw", help="Write the plain bus bytes.", metavar="FILE"),
    truth: Path | None = typer.Option(
        None, "--truth", help="Write the ground truth (JSON lines).", metavar="FILE"
    ),
    listen: str | None = typer.Option(
        None,
        "--listen",
        help="Serve the bytes on tcp://HOST:PORT (waits for the first client).",
        metavar="URL",
    ),
    pty: bool = typer.Option(False, "--pty", help="Serve the bytes on a pseudo-terminal (prints its path)."),
    gateways: int = typer.Option(1, "--gateways", help="Number of TAPs (IDs from 0x1201).", metavar="N"),
    nodes: int = typer.Option(135, "--nodes", help="Optimizers per gateway.", metavar="N"),
    start: str = typer.Option(
        DEFAULT_START.isoformat(), "--start", help="Simulated start time, ISO-8601.", metavar="TIME"
    ),
    duration: str = typer.Option(
        "1h", "--duration", help="How long to simulate: 90m, 3h, 7d, 1h30m.", metavar="DURATION"
    ),
    seed: int = typer.Option(
        1, "--seed", help="Same seed, same array, same weather, same bytes.", metavar="N"
    ),
    firmware: str = typer.Option(
        "legacy",
        "--firmware",
        help="legacy, or 4x (new status words, 14/15-byte reports).",
        metavar="legacy|4x",
    ),
    noise: float = typer.Option(
        0.0, "--noise", help="Probability per frame of bit errors, truncation or garbage.", metavar="P"
    ),
    reassign: bool = typer.Option(
        False, "--reassign", help="Replace an optimizer mid-run (new long address, bit-15 alias)."
    ),
    reassign_at: str | None = typer.Option(
        None, "--reassign-at", help="When to replace it (default: mid-run).", metavar="TIME"
    ),
    controller_restart: bool = typer.Option(
        True, "--controller-restart/--no-controller-restart", help="Begin with enumeration and a node table."
    ),
    identity: bool = typer.Option(
        True,
        "--identity/--no-identity",
        help="Node tables, topology reports and enumeration at all (off: barcodes are never heard).",
    ),
    aliases_last: bool = typer.Option(
        False,
        "--aliases-last",
        help="Node table pages list bit-15 aliases after their plain IDs (…0x000A, 0x800A; next 0x000B).",
    ),
    quiet_replacement: bool = typer.Option(
        False,
        "--quiet-replacement",
        help="The replacement sends no topology report: only the node table read after it tells.",
    ),
    silence: str = typer.Option(
        "", "--silence", help="NODE@TIME[,...]: that optimizer (first gateway) stops reporting then."
    ),
    speed: str = typer.Option(
        "",
        "--speed",
        help="realtime, 60x or max. Default: max for files, realtime for --listen/--pty.",
        metavar="SPEED",
        show_default=False,
    ),
) -> None:
    """Simulate a Tigo installation and write or serve the bytes a listener would see."""
    # Imported here so that the other commands (notably `run`) do not carry the simulator.
    from recorder.sim.bus import BusSimulation
    from recorder.sim.outputs import FileOutputs, Pacer, PtyOutput, TruthWriter, stream

    if not (out or raw or truth or listen or pty):
        raise UsageError("choose at least one output: --out, --raw, --truth, --listen or --pty")
    if listen and pty:
        raise UsageError("--listen and --pty cannot be combined; run two simulators")
    config = SimulationConfig(
        gateways=gateways,
        nodes=nodes,
        start=parse_datetime(start, "--start"),
        duration=_duration(duration),
        seed=seed,
        firmware=firmware,
        noise=noise,
        reassign=reassign or reassign_at is not None,
        reassign_at=parse_datetime(reassign_at, "--reassign-at") if reassign_at else None,
        controller_restart=controller_restart,
        identity=identity,
        aliases_last=aliases_last,
        quiet_replacement=quiet_replacement,
        silence=parse_silence(silence),
    ).validate()
    live = bool(listen or pty)
    pace = parse_speed(speed) if speed else (1.0 if live else None)
    out, raw, truth = (
        check_output_path(path, option) if path is not None else None
        for path, option in ((out, "--out"), (raw, "--raw"), (truth, "--truth"))
    )

    stop = threading.Event()

    def on_signal(_number: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    server = _server(listen) if listen else None
    terminal = PtyOutput() if pty else None
    try:
        truth_writer = TruthWriter(truth) if truth else None
    except OSError as error:
        raise UsageError(f"--truth: cannot write {truth}: {error.strerror}") from None
    started = time.perf_counter()
    try:
        if server is not None:
            print(f"listening on tcp://{server.address[0]}:{server.port}", flush=True)
            if not server.wait_for_client(stop):
                return
        if terminal is not None:
            print(terminal.path, flush=True)
            if not terminal.wait_for_reader(stop):
                return
        simulation = BusSimulation(config)
        try:
            outputs = FileOutputs(out, raw)
        except OSError as error:
            raise UsageError(f"cannot write {error.filename}: {error.strerror}") from None
        with outputs as files:
            sinks = [lambda data, seconds: files.write(data, config.start + timedelta(seconds=seconds))]
            if server is not None:
                sinks.append(lambda data, _seconds: server.send(data))
            if terminal is not None:
                sinks.append(lambda data, _seconds: terminal.write(data))
            total = stream(simulation.run(truth_writer), sinks, Pacer(pace, stop))
    finally:
        if truth_writer is not None:
            truth_writer.close()
        if server is not None:
            server.close()
        if terminal is not None:
            terminal.close()
    elapsed = time.perf_counter() - started
    stats = simulation.statistics
    print(
        f"simulated {config.duration} of {config.gateways} gateway(s) × {config.nodes} optimizers: "
        f"{total / 1e6:.1f} MB of bus bytes, {stats['reports']} power reports "
        f"({stats['destroyed_reports']} destroyed by noise) in {elapsed:.1f} s",
        file=sys.stderr,
    )


def _server(url: str) -> TcpBroadcastServer:
    from recorder.sim.outputs import TcpBroadcastServer

    parts = urlsplit(url)
    if parts.scheme != "tcp" or not parts.hostname or parts.port is None:
        raise UsageError(f"--listen: {url!r} is not of the form tcp://127.0.0.1:PORT")
    return TcpBroadcastServer(parts.hostname, parts.port)


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise UsageError(f"--duration: {error}") from None
