"""Where simulated bus bytes go: files, a TCP server, a pseudo-terminal; paced or not.

* Capture file (`recorder.capture` format), raw byte file, ground-truth JSON lines.
* TCP server (`tcp://127.0.0.1:PORT`): streams to every connected client, several at once; it
  waits for the first client before starting (so nothing is simulated into the void), later
  clients join the live stream. It never reads what clients send.
* Pseudo-terminal: prints the device path; waits until a reader has opened it at 38400 baud
  (pyserial flushes the input queue when it opens a port, so earlier bytes would be lost),
  then writes. The master side blocks when the reader falls behind, so nothing is dropped.

Pacing: `speed` is a multiple of real time (1.0 = real time) or None (as fast as possible).
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import json
import logging
import os
import socket
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from recorder.capture import CaptureWriter
from recorder.errors import UsageError

log = logging.getLogger(__name__)


class Pacer:
    """Sleeps so that simulated time advances at `speed` × real time."""

    def __init__(self, speed: float | None, stop: threading.Event | None = None) -> None:
        self.speed = speed
        self.stop = stop or threading.Event()
        self._origin: float | None = None

    def wait_until(self, simulated_seconds: float) -> None:
        if self.speed is None:
            return
        if self._origin is None:
            self._origin = time.monotonic() - simulated_seconds / self.speed
            return
        delay = self._origin + simulated_seconds / self.speed - time.monotonic()
        if delay > 0:
            self.stop.wait(delay)


class TruthWriter:
    def __init__(self, path: Path) -> None:
        self._stream: IO[str] = path.open("w", encoding="utf-8")

    def __call__(self, record: dict[str, Any]) -> None:
        self._stream.write(json.dumps(record, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._stream.close()


class TcpBroadcastServer:
    def __init__(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((host, port))
        except OSError as error:
            self._listener.close()
            raise UsageError(f"--listen: cannot listen on {host}:{port} ({error.strerror})") from None
        self._listener.listen(8)
        self.address = self._listener.getsockname()
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._first_client = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="sim-listener", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.address[1])

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, peer = self._listener.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            log.info("simulator: client %s connected", peer)
            with self._lock:
                self._clients.append(client)
            self._first_client.set()

    def wait_for_client(self, stop: threading.Event) -> bool:
        while not stop.is_set():
            if self._first_client.wait(0.2):
                return True
        return False

    @property
    def client_count(self) -> int:
        with self._lock:
            return len(self._clients)

    def send(self, data: bytes) -> None:
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            try:
                client.sendall(data)
            except OSError:
                with self._lock:
                    self._clients.remove(client)
                client.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            for client in self._clients:
                with contextlib.suppress(OSError):
                    client.shutdown(socket.SHUT_RDWR)
                client.close()
            self._clients.clear()


class PtyOutput:
    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        self.path = os.ttyname(self._slave)
        # Raw mode: no echo, no newline translation. Start at 9600 baud so we can tell when a
        # reader has configured the port for the bus (38400).
        tty.setraw(self._slave)
        attributes = termios.tcgetattr(self._slave)
        attributes[4] = attributes[5] = termios.B9600
        termios.tcsetattr(self._slave, termios.TCSANOW, attributes)

    def wait_for_reader(self, stop: threading.Event, settle: float = 0.5) -> bool:
        while not stop.is_set():
            attributes = termios.tcgetattr(self._slave)
            if attributes[5] == termios.B38400:
                stop.wait(settle)  # let the reader finish opening (it flushes its input queue)
                return True
            stop.wait(0.05)
        return False

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.master, view)
            view = view[written:]

    def drain(self, timeout: float = 30.0, linger: float = 2.0, quiet: float = 0.5) -> None:
        """Wait until the reader has taken everything written (closing discards the rest).

        The kernel holds up to ~64 KiB between the master and the reader's queue where no ioctl
        can see it (FIONREAD on the slave counts only the last 4 KiB, TIOCOUTQ on a pty master
        is always 0). A live reader empties that in milliseconds, so we linger, then wait for
        the visible queue to stay empty.
        """
        time.sleep(linger)
        deadline = time.monotonic() + timeout
        pending = array.array("i", [0])
        empty_since: float | None = None
        while time.monotonic() < deadline:
            fcntl.ioctl(self._slave, termios.FIONREAD, pending, True)
            now = time.monotonic()
            if pending[0]:
                empty_since = None
            elif empty_since is None:
                empty_since = now
            elif now - empty_since >= quiet:
                return
            time.sleep(0.02)

    def close(self) -> None:
        self.drain()
        for descriptor in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(descriptor)


class FileOutputs:
    """Capture and/or raw files written as the simulation runs."""

    def __init__(self, capture: Path | None, raw: Path | None) -> None:
        self._capture_stream = capture.open("wb") if capture else None
        self._capture = CaptureWriter(self._capture_stream) if self._capture_stream else None
        self._raw = raw.open("wb") if raw else None

    def write(self, data: bytes, at: Any) -> None:
        if self._capture is not None:
            self._capture.write(data, at)
        if self._raw is not None:
            self._raw.write(data)

    def close(self) -> None:
        if self._capture is not None and self._capture_stream is not None:
            self._capture.close()
            self._capture_stream.close()
        if self._raw is not None:
            self._raw.close()

    def __enter__(self) -> FileOutputs:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def stream(
    chunks: Iterable[tuple[bytes, float]],
    sinks: list[Callable[[bytes, float], None]],
    pacer: Pacer,
) -> int:
    """Feed every chunk to every sink at the pace given; returns the number of bytes."""
    total = 0
    for data, seconds in chunks:
        if pacer.stop.is_set():
            break
        pacer.wait_until(seconds)
        for sink in sinks:
            sink(data, seconds)
        total += len(data)
    return total
