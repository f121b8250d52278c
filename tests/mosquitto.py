"""A real, throwaway Mosquitto broker for tests (Debian `mosquitto`), and a subscriber that keeps
the last message of every topic.

`LocalMosquitto(directory).start()` writes a configuration (a listener on a free loopback port,
anonymous clients allowed, or, with `users={name: password}`, a password file and anonymous
clients refused), starts the broker and waits until it accepts connections. Nothing persists:
retained messages live in the broker's memory, so `restart()` (same port) starts it empty.
`stop()` ends the process we started, by its pid (never by name: other people's brokers may run).

`Subscriber(port)` is a paho client subscribed to `#`: `messages` holds the last payload of every
topic (retained ones included), `history` every message in order, and `wait_for` polls a
condition over them.
"""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.influx import free_ports
from tests.servers import LocalServer


class MosquittoUnavailable(RuntimeError):
    """mosquitto is not installed, or did not come up."""


def find_mosquitto() -> str:
    path = shutil.which("mosquitto", path="/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin")
    if path is None:
        raise MosquittoUnavailable(
            "mosquitto not found: the MQTT tests need a real broker. Install it with: apt-get install mosquitto"
        )
    return path


class LocalMosquitto(LocalServer):
    unavailable = MosquittoUnavailable

    def __init__(self, directory: Path, *, users: dict[str, str] | None = None) -> None:
        super().__init__(directory, directory / "mosquitto.log")
        self.users = users
        self.port = free_ports(1)[0]

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        program = find_mosquitto()
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            # As root, mosquitto would switch to the `mosquitto` user and lose our files.
            f"user {getpass.getuser()}",
        ]
        if self.users is None:
            lines.append("allow_anonymous true")
        else:
            passwords = self.directory / "passwords"
            passwords.write_text("")
            for name, password in self.users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(passwords), name, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        config = self.directory / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        self._spawn([program, "-c", str(config)])
        self._wait_until(self._accepts, "mosquitto did not come up")

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def restart(self) -> None:
        self.stop()
        self.start()


class Subscriber:
    """A paho client on `#` keeping the last payload per topic; reconnects by itself."""

    def __init__(
        self, port: int, *, topic: str = "#", username: str | None = None, password: str | None = None
    ):
        self.messages: dict[str, bytes] = {}
        self.history: list[tuple[str, bytes, bool]] = []  # (topic, payload, retained)
        self.connects = 0
        self._lock = threading.Lock()
        self._topic = topic
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-subscriber-{port}-{id(self)}")
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            self.connects += 1
            client.subscribe(self._topic, qos=1)

    def _on_message(self, _client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.history.append((message.topic, message.payload, bool(message.retain)))
            if message.payload:
                self.messages[message.topic] = message.payload
            else:
                self.messages.pop(message.topic, None)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def snapshot(self) -> dict[str, bytes]:
        with self._lock:
            return dict(self.messages)

    def json(self, topic: str) -> Any:
        payload = self.snapshot().get(topic)
        return None if payload is None else json.loads(payload)

    def text(self, topic: str) -> str | None:
        payload = self.snapshot().get(topic)
        return None if payload is None else payload.decode()

    def count(self, predicate: Callable[[str], bool]) -> int:
        """How many messages (not only the last ones) arrived on topics the predicate accepts."""
        with self._lock:
            return sum(1 for topic, _payload, _retained in self.history if predicate(topic))

    def publish(self, topic: str, payload: str, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()
            self.history.clear()


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)
