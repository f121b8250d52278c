"""The live face's HTTP server: `/`, `/api/status` and `/metrics`, read-only, on its own threads.

Theory of operation. `start_live_face` binds the address from `--http` and runs the standard
library's `ThreadingHTTPServer` in a daemon thread; each request gets a short-lived daemon
thread of its own. A request reads one `LiveData` snapshot and renders it; the read loop and the
outbox are never touched, so a slow client, a stuck connection (10 s socket timeout) or a busy
Prometheus costs only this server's threads.

Only GET and HEAD are served (anything else: 405); unknown paths get 404. At most
`MAX_CLIENTS` connections are served at once; further ones are closed as they arrive. Responses are never
cached (`no-store`), the page carries a strict Content-Security-Policy, and nothing secret is
ever rendered (see `status.py`).

Binding: loopback by default; another address is the user's explicit choice, and the log says
the face is then reachable from the network. If the address cannot be bound (port in use, no
such address, permission), the error is logged in one line and `recorder run` goes on recording
without the face: the recorder's job is the data, and a second recorder started with the default
port must not stop the first from being useful, nor stop recording itself.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from recorder.live.address import HttpAddress
from recorder.live.metrics import LiveCollector, render_metrics
from recorder.live.page import status_page
from recorder.live.snapshot import LiveData
from recorder.live.status import status_document

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10.0  # seconds a client may take to send its request
MAX_CLIENTS = 32  # connections served at once; more are closed at once (a Pi's memory is small)


class LiveServer:
    """A bound, running HTTP server for the live face; `stop()` ends it."""

    def __init__(self, httpd: _Server, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._httpd.server_address[0])
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def start_live_face(address: HttpAddress, data: LiveData, version: str) -> LiveServer | None:
    """Bind and serve in a daemon thread; None (after one logged line) if it cannot bind."""
    try:
        httpd = _bind(address, _Renderer(data, version))
    except OSError as error:
        log.error(
            "cannot serve the status page and /metrics on %s: %s; recording continues without them "
            "(choose another --http HOST:PORT, or an empty --http to turn them off)",
            address,
            _describe(error),
        )
        return None
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.5}, name="live-http")
    thread.daemon = True
    thread.start()
    server = LiveServer(httpd, thread)
    bound = str(httpd.server_address[0])
    log.info("status page on %s (Prometheus metrics at %smetrics)", server.url, server.url)
    if not _is_loopback(bound):
        log.info(
            "the status page and /metrics listen on %s and are reachable from the network "
            "(read-only; nothing secret is served)",
            bound,
        )
    return server


def _describe(error: OSError) -> str:
    if isinstance(error, socket.gaierror):
        return f"the host name does not resolve ({error.strerror})"
    if error.errno == errno.EADDRINUSE:
        return "the port is already in use"
    if error.errno == errno.EADDRNOTAVAIL:
        return "this machine has no such address"
    if error.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges)"
    return error.strerror or str(error)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _bind(address: HttpAddress, renderer: _Renderer) -> _Server:
    if address.host:
        family, _, _, _, sockaddr = socket.getaddrinfo(
            address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        return _Server(family, sockaddr[:2], renderer, dual_stack=False)
    if socket.has_ipv6:  # ":PORT": every interface, IPv6 and IPv4 alike
        try:
            return _Server(socket.AF_INET6, ("::", address.port), renderer, dual_stack=True)
        except OSError as error:
            if error.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                raise
    return _Server(socket.AF_INET, ("0.0.0.0", address.port), renderer, dual_stack=False)


class _Renderer:
    """Turns a path into (status, content type, body, extra headers)."""

    def __init__(self, data: LiveData, version: str) -> None:
        self.data = data
        self.version = version
        self.collector = LiveCollector(data)

    def render(self, path: str) -> tuple[int, str, bytes, dict[str, str]]:
        if path in ("/", "/index.html"):
            page = status_page()
            headers = {"Content-Security-Policy": page.content_security_policy}
            return 200, "text/html; charset=utf-8", page.body, headers
        if path == "/metrics":
            body, content_type = render_metrics(self.collector)
            return 200, content_type, body, {}
        if path == "/api/status":
            document = status_document(self.data.snapshot(), self.version)
            body = json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
            return 200, "application/json", body, {}
        return 404, "text/plain; charset=utf-8", b"not found: try /, /metrics or /api/status\n", {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # rebinding after a restart (TIME_WAIT); a live listener still conflicts

    def __init__(
        self,
        family: int,
        address: tuple[Any, ...],
        renderer: _Renderer,
        *,
        dual_stack: bool,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.address_family = family
        self.dual_stack = dual_stack
        self.renderer = renderer
        self._slots = threading.BoundedSemaphore(max_clients)
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.debug("live face: too many connections; closing one from %s", client_address)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if self.dual_stack else 1)
        # HTTPServer.server_bind would look up our host name in DNS (slow, or stuck, without DNS)
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # the client went away (reset, timeout): routine
            log.debug("live face: connection from %s ended: %s", client_address, error)
        else:
            log.exception("live face: error handling a request from %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT

    def version_string(self) -> str:
        return "recorder"

    def do_GET(self) -> None:
        self._respond(head=False)

    def do_HEAD(self) -> None:
        self._respond(head=True)

    def _refuse(self) -> None:
        body = b"read-only: only GET and HEAD\n"
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    def _respond(self, *, head: bool) -> None:
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        try:
            status, content_type, body, headers = self.server.renderer.render(path)
        except Exception:  # a bug in rendering must not take the server down
            log.exception("live face: could not render %s", path)
            status, content_type, body, headers = 500, "text/plain; charset=utf-8", b"internal error\n", {}
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # the base class's names
        log.debug("live face: %s %s", self.address_string(), format % args)
