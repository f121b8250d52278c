from __future__ import annotations

from datetime import datetime, timedelta

from recorder.reading import Reading
from recorder.run import DecodeWatch, LatencyProbe
from recorder.storage.outbox import PendingReading
from recorder.timestamps import to_millis


def local(hour: int, minute: int = 0, day: int = 21) -> datetime:
    return datetime(2025, 6, day, hour, minute).astimezone()  # the machine's own time zone


def test_decode_watch_warns_in_daylight_when_frames_flow_without_reports() -> None:
    watch = DecodeWatch(timedelta(minutes=30))
    assert watch.update(local(11, 0), frames=1000, power_reports=500) is None
    assert watch.update(local(11, 20), frames=5000, power_reports=500) is None  # not long enough yet
    warning = watch.update(local(11, 35), frames=9000, power_reports=500)
    assert warning is not None and "no power report has decoded for 35 minutes" in warning
    assert watch.stalled
    assert watch.update(local(11, 40), frames=9500, power_reports=500) is None  # not repeated at once
    assert watch.update(local(11, 45), frames=9600, power_reports=501) is None  # reports are back
    assert not watch.stalled


def test_decode_watch_is_quiet_at_night_and_when_the_bus_is_silent() -> None:
    watch = DecodeWatch(timedelta(minutes=30))
    watch.update(local(21, 0), frames=100, power_reports=10)
    assert watch.update(local(23, 0), frames=90_000, power_reports=10) is None  # night: no reports expected
    quiet = DecodeWatch(timedelta(minutes=30))
    quiet.update(local(11, 0), frames=100, power_reports=10)
    assert quiet.update(local(12, 0), frames=120, power_reports=10) is None  # no traffic either


def test_decode_watch_learns_daylight_from_recent_days() -> None:
    watch = DecodeWatch(timedelta(minutes=30))
    for day in (18, 19, 20):
        for hour in range(6, 19):
            watch.update(
                local(hour, 0, day), frames=hour * 1000 + day * 100_000, power_reports=hour + day * 100
            )
    start, end = watch.window()
    assert 6.5 < start < 7.5 and 16.5 < end < 17.5


def test_latency_probe_percentiles() -> None:
    probe = LatencyProbe()
    day = to_millis(datetime(2025, 6, 21).astimezone())
    readings: list[Reading] = [
        (4609, node, day + 1000 * node, day, 0x1000, 700, 350, 255, 1000, 250, 150, None)
        for node in range(100)
    ]
    probe.arrived(readings, at=1000.0)
    pending = [PendingReading(i, reading) for i, reading in enumerate(readings)]
    probe.acknowledged(pending[:99], at=1000.5)
    probe.acknowledged(pending[99:], at=1003.0)
    assert probe.count == 100
    p50, p99 = probe.percentiles()  # type: ignore[misc]
    assert abs(p50 - 0.51) < 1e-9 and abs(p99 - 0.51) < 1e-9
    assert abs(probe.percentile(1.0) - 3.01) < 1e-9  # type: ignore[operator]


def test_latency_probe_memory_is_bounded_and_counts_readings_sent_from_memory() -> None:
    probe = LatencyProbe()
    start = to_millis(datetime(2025, 6, 21).astimezone())
    # A long outage: every reading goes through the outbox and its arrival is remembered.
    readings: list[Reading] = [
        (4609, 7, start + 1000 * n, start, 0x1000, 700, 350, 255, 1000, 250, 150, None)
        for n in range(LatencyProbe.MAX_REMEMBERED + 500)
    ]
    probe.arrived(readings, at=10.0)
    assert probe.remembered == LatencyProbe.MAX_REMEMBERED  # the oldest were forgotten
    probe.acknowledged([PendingReading(1, readings[-1])], at=12.0)
    probe.acknowledged([PendingReading(2, readings[0])], at=12.0)
    assert probe.count == 1  # the forgotten one is not counted
    probe.delivered([11.5, 11.9], at=12.0)  # sent from memory: the arrival travels with it
    assert probe.count == 3
    assert abs(probe.percentile(1.0) - 2.01) < 1e-9  # type: ignore[operator]
