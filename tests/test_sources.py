from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
import threading
import time
import tty
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from recorder import sources
from recorder.errors import SourceError
from recorder.sources import (
    CaptureSource,
    RawSource,
    ReconnectPolicy,
    SerialSource,
    SourceOptions,
    TcpSource,
    open_source,
)
from tests.bus_server import BusServer, reset, send_slowly
from tests.helpers import T0
from tests.protocol import reference_frames as ref

FAST = ReconnectPolicy(initial_delay=0.05, max_delay=0.2, idle_timeout=0.6, tick=0.05)
STREAM = ref.RECEIVE_REQUEST_1883 + ref.LINK_EXAMPLE


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("/dev/ttyUSB0", SerialSource),
        ("serial:///dev/ttyAMA0", SerialSource),
        ("tcp://192.168.1.50", TcpSource),
        ("tcp://[::1]:502", TcpSource),
        ("capture:/tmp/x.cap.gz", CaptureSource),
        ("raw:/tmp/x.bin", RawSource),
    ],
)
def test_url_forms(url: str, kind: type) -> None:
    assert isinstance(open_source(url), kind)


def test_tcp_default_port_and_ipv6() -> None:
    assert open_source("tcp://converter").port == 7160  # type: ignore[attr-defined]
    source = open_source("tcp://[::1]:502")
    assert (source.host, source.port) == ("::1", 502)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty source URL"),
        ("ftp://x", "unknown source"),
        ("tcp://host:http", "port must be a number"),
        ("tcp://:7160", "malformed TCP URL"),
        ("capture:", "expected capture:PATH"),
        ("sim:?nodes=abc", "simulator option"),
        ("sim:?colour=blue", "unknown simulator option"),
        ("sim:?duration=soon", "simulator option duration: 'soon' is not a duration"),
    ],
)
def test_malformed_urls_say_what_is_expected(url: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        open_source(url)


def test_the_simulator_source_does_not_import_the_url_opener() -> None:
    """sources -> sim -> source_base, one way: the simulator's source needs only the base."""
    code = "import sys, recorder.sim.source; print('recorder.sources' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "False"


def test_missing_files_and_devices_are_reported_up_front(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        open_source(f"capture:{tmp_path / 'nope.cap.gz'}").check()
    with pytest.raises(SourceError, match="is a directory"):
        open_source(f"raw:{tmp_path}").check()
    with pytest.raises(SourceError, match="serial port /dev/ttyNOPE0 does not exist"):
        open_source("/dev/ttyNOPE0").check()


def test_raw_source_synthesises_line_rate_times(tmp_path: Path) -> None:
    path = tmp_path / "dump.bin"
    path.write_bytes(bytes(3840 * 2))
    source = open_source(f"raw:{path}", SourceOptions(raw_start=T0))
    chunks = list(source.chunks())
    assert sum(len(data) for data, _ in chunks) == 7680
    assert chunks[-1][1] == T0 + timedelta(seconds=2)  # last byte after 7680 bytes at 3840/s
    os.utime(path, (0, T0.timestamp()))
    default = open_source(f"raw:{path}")
    assert list(default.chunks())[-1][1] == T0  # by default the dump ends at its modification time


def test_a_gzip_raw_dump_is_read_uncompressed_and_timed_by_its_uncompressed_length(tmp_path: Path) -> None:
    content = bytes(range(256)) * 60  # 15360 bytes: 4 s at 3840 bytes/s
    path = tmp_path / "dump.bin.gz"
    # Two members, as `cat a.gz b.gz` makes: the trailer's ISIZE only knows the second one.
    path.write_bytes(gzip.compress(content[:10000]) + gzip.compress(content[10000:]))
    assert path.stat().st_size < len(content)
    os.utime(path, (0, T0.timestamp()))
    chunks = list(open_source(f"raw:{path}").chunks())
    assert b"".join(data for data, _ in chunks) == content
    assert chunks[-1][1] == T0  # the last byte at the modification time...
    assert chunks[0][1] == T0 - timedelta(seconds=4, microseconds=-66666)  # ...the first 4 s before
    assert sources.dump_length(path) == len(content)
    started = open_source(f"raw:{path}", SourceOptions(raw_start=T0))
    assert list(started.chunks())[-1][1] == T0 + timedelta(seconds=4)


def test_a_corrupt_gzip_raw_dump_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "dump.bin.gz"
    whole = gzip.compress(os.urandom(100_000))
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(SourceError, match=r"raw dump .*dump.bin.gz: corrupt gzip data after \d+ bytes"):
        list(open_source(f"raw:{path}").chunks())


def collect(source: TcpSource | SerialSource, want: int, timeout: float = 10) -> tuple[bytes, list[datetime]]:
    received = b""
    times: list[datetime] = []
    deadline = time.monotonic() + timeout
    for data, at in source.chunks():
        received += data
        times.append(at)
        if len(received) >= want or time.monotonic() > deadline:
            break
    source.stop()
    return received, times


@pytest.mark.parametrize("misbehaviour", ["close", "reset", "half-open"])
def test_tcp_source_reconnects_and_never_transmits(misbehaviour: str) -> None:
    stop = threading.Event()

    def serve(client: socket.socket, number: int) -> None:
        send_slowly(client, STREAM)
        if misbehaviour == "close":
            client.close()
        elif misbehaviour == "reset":
            reset(client)
        else:
            stop.wait(30)  # keep the socket, send nothing: only the watchdog can notice

    server = BusServer(serve)
    try:
        source = TcpSource("tcp://test", "127.0.0.1", server.port, FAST)
        received, _ = collect(source, want=3 * len(STREAM))
        assert received == STREAM * 3
        assert server.connections >= 3
        assert source.status.disconnects >= 2
        if misbehaviour == "half-open":
            assert source.status.watchdog_reconnects >= 2
        assert server.received_from_clients == 0
    finally:
        stop.set()
        server.close()


def test_tcp_keepalive_is_enabled() -> None:
    accepted: list[socket.socket] = []
    server = BusServer(lambda client, _: accepted.append(client))
    try:
        connection = TcpSource("tcp://test", "127.0.0.1", server.port, FAST).connect()
        sock = connection._socket  # type: ignore[attr-defined]
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        connection.close()
    finally:
        server.close()


def test_tcp_source_retries_a_refused_connection_until_it_is_up() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    source = TcpSource("tcp://test", "127.0.0.1", port, FAST)
    chunks = source.chunks()
    for _ in range(10):
        next(chunks)  # idle ticks while refused
    assert source.status.state == "reconnecting" and source.status.connects == 0
    source.stop()


def test_serial_source_reads_a_pseudo_terminal_with_real_tty_semantics() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    source = SerialSource(path, path, FAST)

    def write_later() -> None:
        time.sleep(0.3)
        os.write(master, STREAM)

    threading.Thread(target=write_later, daemon=True).start()
    received, times = collect(source, want=len(STREAM))
    assert received == STREAM
    assert all(at.tzinfo is UTC for at in times)
    os.close(master)
    os.close(slave)


def test_nothing_decoded_is_bytes_without_a_single_frame() -> None:
    assert sources.nothing_decoded(0, 0, "capture") is None  # nothing from nothing: no complaint
    assert sources.nothing_decoded(8_200_000, 3, "raw") is None  # a quiet night: polls, no reports
    assert (
        sources.nothing_decoded(8_200_000, 0, "raw")
        == "no TAP frames in 8.2 MB: is this a raw dump of the bus at 38400 8N1?"
    )
    assert sources.nothing_decoded(512, 0, "capture") == (
        "no TAP frames in 512 bytes: is this a capture of the bus (taptap or recorder format)?"
    )
