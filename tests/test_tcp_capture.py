"""`tcp://HOST:PORT?format=capture`: a timestamped capture stream over a real loopback socket.

The bytes' times are the capture's, not the wall clock's: each record is stamped with its own
time by the same decoder that reads capture files, whatever pieces the network cuts it into;
while nothing arrives the stream's time stands still; a new connection is a new capture.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from recorder.capture import CaptureWriter
from recorder.errors import SourceError
from recorder.sim.bus import BusSimulation
from recorder.sim.config import SimulationConfig
from recorder.sim.outputs import TruthWriter
from recorder.sources import ReconnectPolicy, TcpSource, open_source
from tests.bus_server import BusServer
from tests.conftest import ROOT
from tests.protocol import reference_frames as ref

FAST = ReconnectPolicy(initial_delay=0.05, max_delay=0.2, idle_timeout=0.6, tick=0.05)
A_YEAR_AGO = datetime(2025, 6, 16, 8, 0, tzinfo=UTC)


class SocketStream:
    """What a `CaptureWriter` writes to: a socket, in pieces of `piece` bytes (the network may
    cut a record anywhere)."""

    def __init__(self, client: socket.socket, piece: int) -> None:
        self.client = client
        self.piece = piece

    def write(self, data: bytes, /) -> int:
        for offset in range(0, len(data), self.piece):
            self.client.sendall(data[offset : offset + self.piece])
        return len(data)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize(
    ("url", "capture"),
    [
        ("tcp://converter?format=capture", True),
        ("tcp://127.0.0.1:7000/?format=capture", True),
        ("tcp://converter?format=raw", False),
        ("tcp://converter", False),
    ],
)
def test_the_format_option_of_a_tcp_url(url: str, capture: bool) -> None:
    source = open_source(url)
    assert isinstance(source, TcpSource) and source.capture is capture


@pytest.mark.parametrize(
    "url", ["tcp://converter?format=xml", "tcp://converter?speed=2", "tcp://c?format=capture&format=raw"]
)
def test_an_unknown_tcp_option_is_one_line_naming_the_one_there_is(url: str) -> None:
    with pytest.raises(SourceError, match=r"^malformed TCP URL .*format=raw .*format=capture") as error:
        open_source(url)
    assert "\n" not in str(error.value)


def test_each_chunk_carries_its_records_time_and_the_idle_ones_the_streams_time() -> None:
    records = [(ref.RECEIVE_REQUEST_1883, A_YEAR_AGO + timedelta(seconds=n * 0.25)) for n in range(8)]

    def serve(client: socket.socket, number: int) -> None:
        writer = CaptureWriter(SocketStream(client, piece=3 if number == 0 else 1000))
        for data, at in records[:4] if number == 0 else records[4:]:
            writer.write(data, at)
            writer.flush()
        if number == 0:
            client.close()  # the next connection is a new capture (a new gzip member)
        else:
            time.sleep(2)  # quiet: the idle chunks keep the last record's time

    server = BusServer(serve)
    try:
        source = TcpSource("tcp://test?format=capture", "127.0.0.1", server.port, FAST, capture=True)
        chunks = []
        deadline = time.monotonic() + 10
        for data, at in source.chunks():
            chunks.append((data, at))
            if sum(1 for d, _ in chunks if d) == len(records) and len(chunks) > len(records) + 3:
                break
            assert time.monotonic() < deadline, chunks
        source.stop()
    finally:
        server.close()
    assert [chunk for chunk in chunks if chunk[0]] == records
    assert server.connections >= 2 and server.received_from_clients == 0
    # No chunk, idle or not, carries the wall clock: before the first record there is none,
    # after it the stream's time stands still at its latest record.
    assert all(at <= records[-1][1] for _, at in chunks)
    last = max(i for i, chunk in enumerate(chunks) if chunk[0])
    assert [at for _, at in chunks[last + 1 :]] == [records[-1][1]] * (len(chunks) - last - 1)
    assert source.status.last_data_at == records[-1][1]


def test_garbage_on_a_capture_stream_drops_that_connection_and_says_why() -> None:
    def serve(client: socket.socket, number: int) -> None:
        client.sendall(ref.RECEIVE_REQUEST_1883)  # raw bus bytes, not a capture
        time.sleep(1)

    server = BusServer(serve)
    source = TcpSource("tcp://test?format=capture", "127.0.0.1", server.port, FAST, capture=True)
    chunks: list[tuple[bytes, datetime]] = []
    # No record, so no time, so not even an idle chunk: the reader runs in a thread until stopped.
    reader = threading.Thread(target=lambda: chunks.extend(source.chunks()), daemon=True)
    try:
        reader.start()
        deadline = time.monotonic() + 10
        while not source.status.disconnects and time.monotonic() < deadline:
            time.sleep(0.05)
        source.stop()
        reader.join(5)
    finally:
        server.close()
    assert not reader.is_alive() and chunks == []
    assert source.status.disconnects >= 1
    assert "not a capture file (no gzip header" in (source.status.last_error or "")


def test_readings_are_placed_at_the_captures_times_not_the_wall_clocks(tmp_path: Path) -> None:
    """`recorder run --dry-run` on a capture stream of a simulated bus from a year ago: every
    power report comes out at the measurement time the simulator's truth gives it."""
    config = SimulationConfig(nodes=5, start=A_YEAR_AGO, duration=timedelta(minutes=2), seed=3).validate()
    truth_path = tmp_path / "truth.jsonl"
    truth = TruthWriter(truth_path)
    sent = threading.Event()

    def serve(client: socket.socket, number: int) -> None:
        if number:
            return
        writer = CaptureWriter(SocketStream(client, piece=4096))
        for data, seconds in BusSimulation(config).run(truth):  # as fast as the socket takes it
            writer.write(data, A_YEAR_AGO + timedelta(seconds=seconds))
            writer.flush()
        truth.close()
        sent.set()
        time.sleep(30)

    server = BusServer(serve)
    process = subprocess.Popen(
        [sys.executable, "-m", "recorder.cli.app", "run", "--dry-run", "--db", str(tmp_path / "state.db"),
         "--source", f"tcp://127.0.0.1:{server.port}?format=capture", "--commit-interval", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert sent.wait(30)
        expected: list[tuple[int, int]] = []
        with truth_path.open(encoding="utf-8") as stream:
            for line in stream:
                record = json.loads(line)
                if record["type"] == "power_report" and not record["destroyed"]:
                    at = datetime.fromisoformat(record["measured_at"])
                    expected.append((record["node_id"], round(at.timestamp() * 1000)))
        assert len(expected) >= 20
        time.sleep(3)  # a commit interval and more: everything received is printed
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
        server.close()
    assert process.returncode == 0, err
    placed: list[tuple[int, int]] = []
    for line in out.splitlines():
        if line.startswith("tigo_optimizer,"):
            tags = dict(part.split("=", 1) for part in line.split(" ", 1)[0].split(",")[1:])
            placed.append((int(tags["node_id"]), int(line.rsplit(" ", 1)[1])))  # milliseconds
    # The slot clock places a report within 1 % of its wait in the gateway (NOTES): within a
    # second of its true time, never a year off as the wall clock would have it.
    assert len(placed) == len(expected)
    for (node, at), (true_node, true_at) in zip(sorted(placed), sorted(expected), strict=True):
        assert node == true_node and abs(at - true_at) <= 1000, (node, at, true_at)
