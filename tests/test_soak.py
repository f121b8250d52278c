"""The soak's fault injector, short (issue 19): `benchmarks/soak.py`'s own code, in CI.

A few simulated hours of a small array at 300× real time, which the capture stream
(`tcp://...?format=capture`) makes exact: every kind of fault at least once (InfluxDB restart,
TCP reset, half-open TCP, power cut, and a full disk when a tmpfs can be mounted, as root in
CI), an optimizer replaced; at the end every report of the simulator's truth is in InfluxDB at
its measurement time with the right barcode, once, except what a power cut may cost, which is
counted by arrival time against the commit interval (and, apart, a replacement's identity change
if a power cut took it: see the soak's docstring).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.soak import FAULTS, soak

pytestmark = [pytest.mark.influx, pytest.mark.slow]


def test_every_fault_together_loses_nothing_outside_the_bound_and_doubles_nothing(tmp_path: Path) -> None:
    figures = soak(
        days=0.125,  # 3 simulated hours of a sunny morning: 36 s of bus at 300x
        nodes=24,
        speed=300.0,
        seed=19,
        fault_every=3.0,
        commit_interval=2.0,
        work=tmp_path,
        say=print,  # shown when the test fails
    )
    summary = "\n".join(figures.lines())
    print(summary)
    kinds = FAULTS if figures.disk_faults else tuple(kind for kind in FAULTS if kind != "disk fill")
    assert all(figures.faults[kind] >= 1 for kind in kinds), summary
    assert figures.faults["optimizer replaced"] == 1
    assert figures.expected > 1000, summary
    assert figures.lost_outside_bound == 0, f"{summary}\n{figures.lost_examples}"
    assert figures.doubled == 0, summary
    assert figures.tracebacks == 0, summary
    lost = figures.lost_in_bound + figures.lost_disk_full_power_cut + figures.lost_identity
    assert figures.written - figures.mistagged + lost == figures.expected, summary
    # What a power cut may cost: the commit interval and a second of slack each side (4 s of
    # wall time, 20 simulated minutes at 300x) of 24 optimizers reporting every 20 s.
    assert figures.lost_in_bound <= 24 * 3 * 20 * figures.faults["power cut"], summary
