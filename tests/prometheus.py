"""A real, throwaway Prometheus for tests (Debian `prometheus`), scraping targets on loopback.

`LocalPrometheus(directory, targets).start()` writes a configuration that scrapes each target
every second, keeps its TSDB in `directory`, listens on a free loopback port, and waits until
it is ready. `query(promql)` runs an instant query through the HTTP API. `stop()` ends the
process we started, by its pid (never by name: other people's Prometheus may be running).
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.influx import free_ports
from tests.servers import LocalServer

CONFIG = """\
global:
  scrape_interval: {interval}
  scrape_timeout: {interval}
  evaluation_interval: 1m
scrape_configs:
  - job_name: recorder
    static_configs:
      - targets: [{targets}]
"""


class PrometheusUnavailable(RuntimeError):
    """prometheus is not installed, or did not come up."""


def find_prometheus() -> str:
    path = shutil.which("prometheus", path="/usr/bin:/usr/local/bin:/usr/sbin:/bin")
    if path is None:
        raise PrometheusUnavailable(
            "prometheus not found: the live-face tests need a real one. Install it with: "
            "apt-get install prometheus"
        )
    return path


class LocalPrometheus(LocalServer):
    unavailable = PrometheusUnavailable
    startup_timeout = 60.0
    stop_timeout = 20.0

    def __init__(self, directory: Path, targets: list[str], *, interval: str = "1s") -> None:
        super().__init__(directory, directory / "prometheus.log")
        self.targets = targets
        self.interval = interval
        self.port = free_ports(1)[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        program = find_prometheus()
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "prometheus.yml"
        config.write_text(
            CONFIG.format(interval=self.interval, targets=", ".join(f"'{t}'" for t in self.targets))
        )
        self._spawn(
            [
                program,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1d",
                "--log.level=warn",
            ]
        )
        self._wait_until(self._ready, "prometheus did not become ready", poll=0.1)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return int(response.status) == 200
        except OSError:
            return False

    def api(self, path: str, **parameters: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(parameters)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.load(response)
        if answer.get("status") != "success":
            raise AssertionError(f"Prometheus answered {answer}")
        return answer["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query: [{"metric": {labels}, "value": float}, ...]."""
        data = self.api("query", query=promql)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": float(data["result"][1])}]
        return [{"metric": item["metric"], "value": float(item["value"][1])} for item in data["result"]]

    def targets_health(self) -> list[dict[str, Any]]:
        return list(self.api("targets")["activeTargets"])
