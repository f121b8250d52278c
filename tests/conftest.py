from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["tests.influx"]


def pytest_configure(config: pytest.Config) -> None:
    # Every `recorder run` a test starts serves its live face (on by default) on a free port of
    # its own, not on the default 9595 that parallel runs and other people's tests would share.
    os.environ.setdefault("RECORDER_HTTP", "127.0.0.1:0")


def run_recorder(
    *arguments: str, check: bool = True, timeout: float = 600, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Run the `recorder` command as a user would, in a child process."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **kwargs.pop("env", {})}  # type: ignore[dict-item]
    completed = subprocess.run(
        [sys.executable, "-m", "recorder.cli.app", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        cwd=kwargs.pop("cwd", ROOT),  # type: ignore[arg-type]
    )
    if check and completed.returncode != 0:
        raise AssertionError(
            f"recorder {' '.join(arguments)} failed ({completed.returncode}):\n{completed.stderr}"
        )
    return completed


@pytest.fixture
def recorder_cli():  # type: ignore[no-untyped-def]
    return run_recorder
