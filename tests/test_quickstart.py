"""The README's first command works from a clean copy of the project (issue "first ten minutes")."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT


def readme_commands() -> list[str]:
    """The lines of the README's first fenced code block."""
    block: list[str] = []
    fences = 0
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            fences += 1
            if fences == 2:
                break
            continue
        if fences == 1 and line.strip():
            block.append(line.strip())
    return block


def test_the_readme_opens_with_exactly_the_two_commands() -> None:
    assert readme_commands() == ["./scripts/quickstart", "./scripts/test"]
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
def test_the_quickstart_runs_end_to_end_in_a_clean_copy(tmp_path: Path) -> None:
    copy = tmp_path / "project"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, tracked):
        source = ROOT / name.decode()
        if source.is_file():
            (copy / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name.decode())
    assert not (copy / ".venv").exists() and not (copy / ".quickstart").exists()
    try:
        completed = subprocess.run(
            ["bash", "-c", readme_commands()[0]], cwd=copy, capture_output=True, text=True, timeout=1200
        )
        output = completed.stdout + completed.stderr
        assert completed.returncode == 0, output[-3000:]
        # Tables go to standard output; the "==>" headings to standard error.
        barcodes = re.findall(r"^(4-[0-9A-F]{1,9}[GHJKLMNPRSTVWXYZ])\s+\d+", completed.stdout, re.MULTILINE)
        assert len(barcodes) >= 10 and "135 nodes, 135 with a barcode" in output
        strings = re.findall(r"^A\d\s+(\d+\.\d)\s*$", completed.stdout, re.MULTILINE)
        assert len(strings) == 9 and all(float(power) > 1000 for power in strings)
        array = re.search(r"array power \(W\)\s+panels\s*\n(\d+\.\d)\s+135", completed.stdout)
        assert array and float(array.group(1)) > 10_000
        assert "0 waiting for a barcode" in output
        # A plain influxd, nothing in front: the recorder wrote to the port InfluxQL reads from,
        # through the 1.x API it chose itself (Debian's InfluxDB 1.6 has no v2 endpoint).
        settings = dict(
            line.split("=", 1)
            for line in (copy / ".quickstart" / "influxdb" / "env").read_text().splitlines()
        )
        assert settings["INFLUX_URL"] == settings["INFLUX_QUERY_URL"]
        assert not (copy / ".quickstart" / "influxdb" / "nginx.conf").exists()
        assert "writing through the 1.x /write API" in completed.stderr
        # The files holding the InfluxDB token are the user's alone.
        for secret in (copy / ".quickstart" / "recorder.toml", copy / ".quickstart" / "influxdb" / "env"):
            assert secret.stat().st_mode & 0o077 == 0, secret
        # What the README says to type next works: the recorder from .venv, the quickstart's settings.
        by_hand = subprocess.run(
            [
                "bash",
                "-c",
                "source .venv/bin/activate && export RECORDER_CONFIG=$PWD/.quickstart/recorder.toml"
                " && recorder nodes list | tail -n 1",
            ],
            cwd=copy,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "135 nodes, 135 with a barcode" in by_hand.stdout, by_hand.stderr
    finally:
        subprocess.run(
            [str(copy / "scripts" / "influxdb-local"), "stop"], cwd=copy, capture_output=True, timeout=60
        )
