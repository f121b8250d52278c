"""The soak's fault injector, short (issue 19): `benchmarks/soak.py` for a few minutes in CI.

Every kind of fault at least once (InfluxDB restart, TCP reset, half-open TCP, power cut, full
disk) plus an optimizer replacement, at real time so that the recorder's clock and the
simulator's agree; at the end every report of the simulator's truth is in InfluxDB with the
right barcode, once, except what a power cut may cost (what arrived within the commit interval
before it, or since the disk filled when it is full), which is counted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.soak import FAULTS, soak

pytestmark = [pytest.mark.influx, pytest.mark.slow]


def test_every_fault_together_loses_nothing_outside_the_bound_and_doubles_nothing(tmp_path: Path) -> None:
    figures = soak(
        days=0.0016,  # 138 simulated (= wall) seconds
        nodes=135,
        speed=1.0,
        seed=19,
        fault_every=8.0,
        commit_interval=2.0,
        work=tmp_path,
        say=print,  # shown when the test fails
    )
    summary = "\n".join(figures.lines())
    kinds = FAULTS if figures.disk_faults else tuple(kind for kind in FAULTS if kind != "disk fill")
    assert all(figures.faults[kind] >= 1 for kind in kinds), summary
    assert figures.faults["optimizer replaced"] == 1
    assert figures.expected > 500, summary
    assert figures.lost_outside_bound == 0, f"{summary}\n{figures.lost_examples}"
    assert figures.doubled == 0, summary
    assert figures.tracebacks == 0, summary
    assert figures.written + figures.lost_in_bound + figures.lost_disk_full_power_cut == figures.expected, (
        summary
    )
    # A power cut costs at most the commit interval (and a second of slack each side) of
    # 135 optimizers reporting every 20 s: about 30 readings.
    assert figures.lost_in_bound <= 30 * figures.faults["power cut"], summary
