"""A throwaway server process for tests: started with its output in a log, waited for, stopped.

`LocalServer` is what `tests.mosquitto.LocalMosquitto` and `tests.prometheus.LocalPrometheus`
share: `_spawn` starts the program (stdin closed, stdout and stderr into the log, in the
server's directory), `_wait_until` polls a readiness check and, when the process exits or the
subclass's `startup_timeout` passes first, stops it and raises the subclass's `unavailable`
error with the log's last lines; `stop` ends the process we started, by its pid (SIGTERM, then
SIGKILL after `stop_timeout`), never by name: other people's servers may be running.
(`tests.influx` keeps its own `_Server`: influxd runs in its own session and is stopped as a
process group.)
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


class LocalServer:
    """One server process that we started, in `directory`, its output in `log`."""

    unavailable: type[RuntimeError] = RuntimeError  # raised when it does not come up
    startup_timeout = 30.0  # seconds
    stop_timeout = 10.0  # seconds between SIGTERM and SIGKILL

    def __init__(self, directory: Path, log: Path) -> None:
        self.directory = directory
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _spawn(self, command: list[str]) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as output:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        return self._process

    def _wait_until(self, ready: Callable[[], bool], failure: str, poll: float = 0.05) -> None:
        """Return once `ready()`; raise `unavailable` ("<failure>:" and the log's tail) if not."""
        deadline = time.monotonic() + self.startup_timeout
        while not ready():
            if self._process is None or self._process.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
                self.stop()
                raise self.unavailable(f"{failure}:\n{tail}")
            time.sleep(poll)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
