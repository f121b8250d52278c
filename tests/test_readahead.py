"""When the backfill reads ahead in a child process (the mechanism itself: tests/test_backfill_passes.py)."""

from __future__ import annotations

import socket

import pytest

from recorder.backfill import READ_AHEAD_BYTES, read_ahead_pays
from recorder.cli.backfill import is_this_machine

BIG = READ_AHEAD_BYTES


@pytest.mark.parametrize(
    ("bus_bytes", "cores", "database_here", "expected"),
    [
        (BIG, 2, True, False),  # InfluxDB shares the two cores: measured slower
        (BIG, 2, False, True),  # InfluxDB elsewhere (or a dry run): measured faster
        (BIG, 4, True, True),  # a core to spare for the child
        (BIG - 1, 8, False, False),  # too small to pay for starting a process
        (BIG, 1, False, False),  # nowhere to run it
    ],
)
def test_read_ahead_runs_only_where_it_pays(
    bus_bytes: int, cores: int, database_here: bool, expected: bool
) -> None:
    assert read_ahead_pays(bus_bytes, cores, database_here) is expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://localhost:8086", True),
        ("http://127.0.0.1:8086", True),
        ("http://[::1]:8086", True),
        (f"http://{socket.gethostname()}:8086", True),
        ("http://192.0.2.10:8086", False),
        ("https://influx.example.net", False),
    ],
)
def test_is_this_machine(url: str, expected: bool) -> None:
    assert is_this_machine(url) is expected
