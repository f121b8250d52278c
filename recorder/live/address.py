"""Where the live face listens: `--http HOST:PORT` (RECORDER_HTTP, TOML `http`).

Accepted forms: `127.0.0.1:9595`, `localhost:9595`, `[::1]:9595`, `0.0.0.0:9595`, and `:9595`
(every interface, like Prometheus's own `--web.listen-address`). An empty value turns the face
off. Port 0 asks the system for a free port (the log says which one). Whether the address is
reachable from the network is decided when binding (`LiveServer`), which says so in the log.
"""

from __future__ import annotations

from dataclasses import dataclass

_EXPECTED = "expected HOST:PORT such as 127.0.0.1:9595, [::1]:9595 or 0.0.0.0:9595, or empty to turn it off"


@dataclass(frozen=True, slots=True)
class HttpAddress:
    host: str  # "" = every interface
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


DEFAULT_ADDRESS = HttpAddress("127.0.0.1", 9595)


def parse_http_address(text: str) -> HttpAddress | None:
    """`HOST:PORT` -> HttpAddress; "" -> None (off). ValueError names what was expected."""
    text = text.strip()
    if not text:
        return None
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":") or not host:
            raise ValueError(_EXPECTED)
        port_text = rest[1:]
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon or ":" in host:  # a bare IPv6 address needs brackets: [::1]:9595
            raise ValueError(_EXPECTED)
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"the port must be a number from 0 to 65535; {_EXPECTED}")
    if any(character.isspace() or character in "/@?#" for character in host):
        raise ValueError(_EXPECTED)
    return HttpAddress(host, int(port_text))
