"""The energy accumulator (recorder.energy): integral, gaps, local days, order, state round trip."""

from __future__ import annotations

import itertools
import math
import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from recorder.energy import (
    HOUR_MS,
    EnergyAccumulator,
    LocalDays,
    Sample,
    zone_named,
)
from recorder.errors import ConfigError
from recorder.timestamps import to_millis

UTC_ZONE = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
KEY = (4609, 2, b"\x04\xc0\x5b\x40\x00\x9a\x57\xa2")


def ms(text: str) -> int:
    return to_millis(datetime.fromisoformat(text))


def sample(at: int, power: float, *, node: int = 2, rssi: int = 150, temperature: float = 20.0) -> Sample:
    return Sample(4609, node, KEY[2] if node == 2 else None, at, power, rssi, temperature)


def series(start: int, count: int, step_ms: int, power: float | None = None) -> list[Sample]:
    return [
        sample(start + i * step_ms, power if power is not None else 100 + 50 * math.sin(i / 7))
        for i in range(count)
    ]


def totals(accumulator: EnergyAccumulator) -> dict[tuple[object, date], tuple[float, int]]:
    return {(d.key, d.day): (d.energy_wh, d.uncovered_seconds) for d in accumulator.open_days()}


def reference_integral(samples: list[Sample], max_gap_ms: int) -> float:
    points = sorted((s.measured_ms, s.power) for s in samples)
    return math.fsum(
        (p1 + p2) / 2 * (t2 - t1) / HOUR_MS
        for (t1, p1), (t2, p2) in itertools.pairwise(points)
        if t2 - t1 <= max_gap_ms
    )


def test_constant_power_for_an_hour_is_exact() -> None:
    accumulator = EnergyAccumulator(UTC_ZONE)
    accumulator.feed(series(ms("2025-06-21T10:00:00+00:00"), 181, 20_000, power=100.0))
    accumulator.close()
    ((energy, uncovered),) = totals(accumulator).values()
    assert energy == pytest.approx(100.0, rel=1e-12) and uncovered == 0


def test_feed_order_and_chunking_do_not_change_a_single_bit() -> None:
    samples = series(ms("2025-06-21T04:00:00+00:00"), 2000, 20_000)
    reference = EnergyAccumulator(UTC_ZONE)
    reference.feed(samples)
    reference.close()
    rng = random.Random(3)
    for _ in range(5):
        # Each reading delivered up to 4 minutes late, fed in chunks of random size.
        delivered = sorted(samples, key=lambda s: s.measured_ms + rng.uniform(0, 240_000))
        accumulator = EnergyAccumulator(UTC_ZONE)
        position = 0
        while position < len(delivered):
            size = rng.randint(1, 40)
            accumulator.feed(delivered[position : position + size])
            position += size
        accumulator.close()
        assert totals(accumulator) == totals(reference)
        assert accumulator.late == 0
    assert totals(reference)[(KEY, date(2025, 6, 21))][0] == pytest.approx(
        reference_integral(samples, 600_000), rel=1e-12
    )


def test_a_long_gap_is_uncovered_time_and_no_energy() -> None:
    start = ms("2025-06-21T10:00:00+00:00")
    samples = [sample(start, 100), sample(start + 60_000, 100), sample(start + 60_000 + 11 * 60_000, 100)]
    samples.append(sample(samples[-1].measured_ms + 60_000, 100))
    accumulator = EnergyAccumulator(UTC_ZONE)
    accumulator.feed(samples)
    accumulator.close()
    ((energy, uncovered),) = totals(accumulator).values()
    assert energy == pytest.approx(100 * 2 / 60, rel=1e-12)  # two one-minute trapezoids
    assert uncovered == 11 * 60
    # Exactly max_gap still counts; the boundary is "longer than".
    accumulator = EnergyAccumulator(UTC_ZONE, timedelta(minutes=11))
    accumulator.feed(samples)
    accumulator.close()
    ((energy, uncovered),) = totals(accumulator).values()
    assert energy == pytest.approx(100 * 13 / 60, rel=1e-12) and uncovered == 0


def test_the_night_is_neither_energy_nor_uncovered() -> None:
    evening = ms("2025-06-21T19:00:00+00:00")
    morning = ms("2025-06-22T04:00:00+00:00")
    accumulator = EnergyAccumulator(UTC_ZONE)
    accumulator.feed([sample(evening, 5), sample(evening + 20_000, 5), sample(morning, 5)])
    accumulator.feed([sample(morning + 20_000, 5)])
    accumulator.close()
    found = totals(accumulator)
    assert found[(KEY, date(2025, 6, 21))][1] == 0 and found[(KEY, date(2025, 6, 22))][1] == 0


def test_a_pair_straddling_local_midnight_is_split_with_the_interpolated_power() -> None:
    # Europe/Berlin in June is UTC+2: local midnight is 22:00 UTC.
    before = ms("2025-06-21T21:59:50+00:00")
    after = ms("2025-06-21T22:00:30+00:00")
    accumulator = EnergyAccumulator(BERLIN)
    accumulator.feed([sample(before, 0.0), sample(after, 40.0)])
    accumulator.close()
    found = totals(accumulator)
    # Power at midnight: 10 W. Day 1: 10 s at 0..10 W; day 2: 30 s at 10..40 W.
    assert found[(KEY, date(2025, 6, 21))][0] == pytest.approx(5 * 10 / 3600, rel=1e-12)
    assert found[(KEY, date(2025, 6, 22))][0] == pytest.approx(25 * 30 / 3600, rel=1e-12)
    days = {d.day: d.day_start_ms for d in accumulator.open_days()}
    assert days[date(2025, 6, 22)] == ms("2025-06-22T00:00:00+02:00")


@pytest.mark.parametrize(("day", "hours"), [(date(2025, 3, 30), 23), (date(2025, 10, 26), 25)])
def test_dst_days_have_23_or_25_hours_and_count_each_once(day: date, hours: int) -> None:
    days = LocalDays(BERLIN)
    assert days.hours_in(day) == hours
    start = days.start_ms(day)
    end = days.start_ms(day + timedelta(days=1))
    assert end - start == hours * HOUR_MS
    samples = [sample(at, 60.0) for at in range(start, end + 1, 60_000)]
    accumulator = EnergyAccumulator(BERLIN)
    accumulator.feed(samples)
    accumulator.close()
    found = totals(accumulator)
    assert found[(KEY, day)][0] == pytest.approx(60.0 * hours, rel=1e-12)
    hour_keys = sorted(accumulator.hours(KEY, day))
    assert hour_keys == list(range(hours))
    assert all(accumulator.hours(KEY, day)[h].readings == 60 for h in hour_keys)


def test_a_skipped_midnight_starts_the_day_when_the_clocks_jump() -> None:
    # America/Santiago moved from -04 to -03 at 24:00 on 2024-09-07: 00:00 never happened.
    zone = ZoneInfo("America/Santiago")
    days = LocalDays(zone)
    start = days.start_ms(date(2024, 9, 8))
    assert start == ms("2024-09-08T04:00:00+00:00")
    assert days.day_of(start) == date(2024, 9, 8) and days.day_of(start - 1) == date(2024, 9, 7)
    assert days.hours_in(date(2024, 9, 8)) == 23 and days.hours_in(date(2024, 9, 7)) == 24


def test_late_and_repeated_readings_are_counted_not_integrated() -> None:
    start = ms("2025-06-21T10:00:00+00:00")
    samples = series(start, 100, 20_000)
    accumulator = EnergyAccumulator(UTC_ZONE)
    accumulator.feed(samples)
    before = totals(accumulator)
    accumulator.feed(samples)  # a replay of the same readings: nothing changes
    assert totals(accumulator) == before
    assert accumulator.late == 100
    # A reading older than the reorder window behind its series' newer ones.
    accumulator.feed([sample(start + 99 * 20_000 + 400_000, 10)])
    accumulator.feed([sample(start + 30 * 20_000 + 1, 10)])
    assert accumulator.late == 101


def test_changes_and_restore_continue_exactly() -> None:
    samples = series(ms("2025-06-21T03:00:00+00:00"), 3 * 24 * 180, 20_000)  # three days
    reference = EnergyAccumulator(BERLIN)
    reference.feed(samples)
    reference.close()
    rng = random.Random(5)
    for _ in range(3):
        cut = rng.randrange(len(samples))
        first = EnergyAccumulator(BERLIN)
        first.feed(samples[:cut])
        changes = first.take_changes()
        # What a checkpoint persisted: positions and the hours of days not yet closed.
        persisted_hours = {(key, day, hour): totals for key, day, hour, totals in changes.hours}
        second = EnergyAccumulator(BERLIN)
        last = {state.key: state for state in changes.series}
        second.restore(
            changes.series,
            [
                (key, day, hour, totals)
                for (key, day, hour), totals in persisted_hours.items()
                if key in last and day >= second.days.day_of(last[key].last_ms)
            ],
            changes.newest_ms,
        )
        # The readings not integrated yet (still in the outbox) are fed again, with some before.
        second.feed(samples[max(0, cut - 50) :])
        second.close()
        assert {k: v for k, v in totals(second).items()} == {
            k: v for k, v in totals(reference).items() if k[1] in {day for _, day in totals(second)}
        }


def test_zone_names() -> None:
    assert zone_named("Europe/Berlin")[1] == "Europe/Berlin"
    with pytest.raises(ConfigError, match="not a known time zone"):
        zone_named("Mars/Olympus")
    zone, name = zone_named(None)
    assert name and datetime(2025, 1, 1, tzinfo=UTC).astimezone(zone)
