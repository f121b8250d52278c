"""systemd's notify protocol, without a dependency: READY, STATUS, WATCHDOG, STOPPING.

With `Type=notify` and `WatchdogSec=` in the unit, systemd sets NOTIFY_SOCKET and WATCHDOG_USEC;
the read loop calls `watchdog()` on every pass, and we ping at half the watchdog interval. If
the loop hangs, the pings stop and systemd restarts the service. Without NOTIFY_SOCKET every
method does nothing.
"""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    def __init__(self) -> None:
        address = os.environ.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        watchdog_usec = os.environ.get("WATCHDOG_USEC", "")
        self._interval = int(watchdog_usec) / 2_000_000 if watchdog_usec.isdigit() else None
        self._last_ping = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, message: str) -> None:
        if not self._address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                # Never wait: when the receiver's queue is full (a handful of datagrams), a
                # blocking send would stall the read loop, and with it the watchdog pings.
                sock.setblocking(False)
                sock.connect(self._address)
                sock.sendall(message.encode())
        except OSError:
            pass  # systemd went away or is behind (the queue is full): nothing useful to do

    def ready(self) -> None:
        self.send("READY=1")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        if self._interval is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self._interval:
            self._last_ping = now
            self.send("WATCHDOG=1")
