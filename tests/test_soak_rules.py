"""The soak's rules for what a lost report may be blamed on (issue 19), without running a soak.

A power cut may cost what the recorder received within the commit interval before it (README,
"Durability"): that is counted by when a report reached the listener, not by when it was
measured, since a report may wait in its gateway 45 s before it is sent.
"""

from __future__ import annotations

import pytest

from benchmarks.soak import loss_cause, match, wall_time_of
from recorder.diskspace import RETRY_EVERY

KILL = 1000.0


def test_a_power_cut_is_blamed_by_arrival_within_the_commit_interval_and_a_second_of_slack() -> None:
    assert loss_cause(KILL - 2.9, [KILL], [], commit_interval=2.0) == "power cut"
    assert loss_cause(KILL + 0.9, [KILL], [], commit_interval=2.0) == "power cut"  # sent into the dead socket
    # Arrived earlier: the recorder had committed it (or InfluxDB had it) before the kill.
    assert loss_cause(KILL - 3.1, [KILL], [], commit_interval=2.0) is None
    # Arrived after the restart: nothing excuses its loss.
    assert loss_cause(KILL + 1.1, [KILL], [], commit_interval=2.0) is None
    assert loss_cause(None, [KILL], [], commit_interval=2.0) is None


def test_a_power_cut_on_a_full_disk_may_cost_everything_since_the_fill_until_the_next_retry() -> None:
    filled, freed = KILL - 15.0, KILL - 5.0
    # Received after the disk filled, killed before the first retry after space came back.
    assert loss_cause(filled + 1.0, [KILL], [[filled, freed]], commit_interval=2.0) == "power cut, disk full"
    # Received well before the fill: it was committed then.
    assert loss_cause(filled - 5.0, [KILL], [[filled, freed]], commit_interval=2.0) is None
    # Killed long after the retry that committed what waited.
    late = freed + RETRY_EVERY + 5.0
    assert loss_cause(filled + 1.0, [late], [[filled, freed]], commit_interval=2.0) is None


def test_wall_time_of_a_chunk_never_spans_a_stall() -> None:
    # At 1x: simulated second 10 sent at wall 100; the recorder was killed after the chunk of
    # second 10.3 (wall 100.3) and the bus stood still until wall 104, when 10.6 went out.
    marks = [(10.0, 100.0), (10.3, 100.3), (10.6, 104.0), (11.1, 104.5)]
    assert wall_time_of(marks, 10.15, 1.0) == pytest.approx(100.15)
    assert wall_time_of(marks, 10.3, 1.0) == pytest.approx(100.3)
    assert wall_time_of(marks, 10.6, 1.0) == pytest.approx(104.0)
    assert wall_time_of(marks, 10.8, 1.0) == pytest.approx(104.2)
    # Truth times are rounded to the millisecond: 10.5996 is the chunk of 10.6, after the stall.
    assert wall_time_of(marks, 10.5996, 1.0) == pytest.approx(104.0)
    # Faster than real time: simulated seconds shrink.
    assert wall_time_of(marks, 10.8, 10.0) == pytest.approx(104.02)
    assert wall_time_of([], 1.0, 1.0) is None


def test_a_point_is_its_report_when_within_a_second_of_its_measurement_time() -> None:
    reports = [(100_000, 1.0), (120_000, 2.0), (140_000, 3.0)]  # (measured ms, arrived)
    # The slot clock put the first 400 ms late; the second is missing; the third came twice
    # (once a second and a half off: not the same point).
    lost, extra, worst = match(reports, [100_400, 140_000, 141_500])
    assert lost == [(120_000, 2.0)]
    assert extra == [141_500]
    assert worst == 400
    assert match(reports, []) == (reports, [], 0)
    assert match([], [5]) == ([], [5], 0)
