"""systemd's notify protocol: a receiver that falls behind never stalls the recorder."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from recorder.systemd import Notifier


def test_a_full_notify_queue_drops_messages_instead_of_blocking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = tmp_path / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(address))
    monkeypatch.setenv("NOTIFY_SOCKET", str(address))
    try:
        notifier = Notifier()

        def send_many() -> None:
            for number in range(500):  # far more than the queue holds (net.unix.max_dgram_qlen)
                notifier.status(f"{number} points written")

        sender = threading.Thread(target=send_many, daemon=True)
        sender.start()
        sender.join(5)
        assert not sender.is_alive(), "a notify send blocked on the full queue"
        receiver.settimeout(1)
        assert receiver.recv(4096) == b"STATUS=0 points written"  # the first ones got through
    finally:
        receiver.close()
