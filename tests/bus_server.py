"""A stand-in RS-485-to-Ethernet converter on loopback, for source tests.

It serves a byte stream to each connection and can misbehave the way converters do: close the
connection, reset it, or go silent while keeping it open (half-open). It records every byte a
client sends, so tests can prove the recorder never transmits.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable


class BusServer:
    def __init__(self, serve: Callable[[socket.socket, int], None], host: str = "127.0.0.1") -> None:
        self._serve = serve
        self._listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(4)
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        self.received_from_clients = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            number = self.connections
            self.connections += 1
            threading.Thread(target=self._watch_for_client_bytes, args=(client,), daemon=True).start()
            thread = threading.Thread(target=self._serve, args=(client, number), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _watch_for_client_bytes(self, client: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                data = client.recv(4096)
            except OSError:
                return
            if not data:
                return
            self.received_from_clients += len(data)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


def reset(client: socket.socket) -> None:
    """Close with an RST instead of a FIN."""
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


def send_slowly(client: socket.socket, data: bytes, pieces: int = 4, pause: float = 0.05) -> None:
    step = max(1, len(data) // pieces)
    for offset in range(0, len(data), step):
        client.sendall(data[offset : offset + step])
        time.sleep(pause)
