"""Where the MQTT publisher connects: `--mqtt mqtt[s]://[user:pass@]HOST[:PORT]` (RECORDER_MQTT).

Accepted: `mqtt://localhost`, `mqtt://broker.lan:1884`, `mqtt://user:secret@192.168.1.5`,
`mqtts://user:secret@broker.example.org` (TLS, checked against the system's certificate
authorities), `mqtt://[::1]:1883`. The port defaults to 1883 (`mqtt`) or 8883 (`mqtts`). A user
name or password holding `@`, `:` or `/` is written percent-encoded (`p%40ss` for `p@ss`). An
empty value means no MQTT (the default).

The password is a `Secret`: `str(broker)` and every message about a URL show `***` in its place
(`redact_url`), so it never reaches a log line or an error message.

This module is imported by the settings; paho-mqtt is imported only by `recorder.live.mqtt`.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from recorder.config import Secret

EXPECTED = (
    "expected mqtt[s]://[user:pass@]HOST[:PORT], such as mqtt://localhost or mqtts://user:pass@broker:8883"
)
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True, slots=True)
class MqttBroker:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: Secret | None = None

    def __str__(self) -> str:
        """The URL without the password (safe to log)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{urllib.parse.quote(self.username, safe='')}@" if self.username is not None else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"


_PASSWORD = re.compile(r"^(\s*[A-Za-z][A-Za-z0-9+.-]*://[^/@:]*:)([^/]*)(@)")  # up to the last @


def redact_url(text: str) -> str:
    """`text` with the password of a `scheme://user:password@` prefix replaced by `***`."""
    return _PASSWORD.sub(r"\1***\3", text, count=1)


def parse_mqtt_url(text: str) -> MqttBroker | None:
    """`mqtt[s]://[user:pass@]HOST[:PORT]` -> MqttBroker; "" -> None (off).

    ValueError names what was wrong and what is expected, never the password.
    """
    text = text.strip()
    if not text:
        return None
    scheme, separator, _ = text.partition("://")
    if not separator:
        raise ValueError(EXPECTED)
    scheme = scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"the scheme must be mqtt or mqtts, not {scheme!r}; {EXPECTED}")
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"the port must be a number from 1 to 65535; {EXPECTED}") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"a broker URL has no path or query; {EXPECTED}")
    host = parts.hostname or ""
    if not host or any(character.isspace() for character in host):
        raise ValueError(f"no host name; {EXPECTED}")
    if port == 0:
        raise ValueError(f"the port must be a number from 1 to 65535; {EXPECTED}")
    username = urllib.parse.unquote(parts.username) if parts.username is not None else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    if password is not None and not username:
        raise ValueError(f"a password needs a user name; {EXPECTED}")
    return MqttBroker(
        host=host,
        port=port if port is not None else DEFAULT_PORTS[scheme],
        tls=scheme == "mqtts",
        username=username or None,
        password=Secret(password) if password else None,
    )
