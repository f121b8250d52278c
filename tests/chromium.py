"""A real headless Chromium (Debian `chromium`) loading a page: its DOM after the scripts ran,
and screenshots.

Each call starts a fresh browser with a new profile directory, no network chatter of its own
(no updates, sync, QUIC or background requests) and lets the page's scripts run for a virtual
time budget before dumping the DOM or taking the screenshot.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",  # tests run as root in CI; the sandbox refuses root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
]


class ChromiumUnavailable(RuntimeError):
    """chromium is not installed."""


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name, path="/usr/bin:/usr/local/bin:/bin")
        if path is not None:
            return path
    raise ChromiumUnavailable(
        "chromium not found: the status page test needs a real browser. Install it with: "
        "apt-get install chromium"
    )


def _run(url: str, extra: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="recorder-chromium-") as profile:
        return subprocess.run(
            [find_chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, url],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )


def dump_dom(url: str, *, budget_ms: int = 4000, window: str = "1400,1000", timeout: float = 90) -> str:
    """The serialised DOM once the page's scripts had `budget_ms` of (virtual) time to run."""
    completed = _run(
        url, [f"--window-size={window}", f"--virtual-time-budget={budget_ms}", "--dump-dom"], timeout=timeout
    )
    if completed.returncode != 0 or "<html" not in completed.stdout:
        raise AssertionError(
            f"chromium --dump-dom failed ({completed.returncode}):\n{completed.stderr[-3000:]}"
        )
    return completed.stdout


def screenshot(
    url: str,
    path: Path,
    *,
    window: str = "1400,2200",
    budget_ms: int = 4000,
    dark: bool = False,
    timeout: float = 90,
) -> Path:
    extra = [f"--window-size={window}", f"--virtual-time-budget={budget_ms}", f"--screenshot={path}"]
    if dark:
        extra += ["--force-dark-mode", "--blink-settings=preferredColorScheme=0"]
    completed = _run(url, extra, timeout=timeout)
    if completed.returncode != 0 or not path.exists() or path.stat().st_size < 1000:
        raise AssertionError(
            f"chromium --screenshot failed ({completed.returncode}):\n{completed.stderr[-3000:]}"
        )
    return path
