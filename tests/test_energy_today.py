"""Energy today for live outputs: the accumulator's running totals, and how the keeper hands
them to another thread (made by the read loop only when asked; never a second computation)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from recorder.energy import REORDER_WINDOW_MS, DayTotals, EnergyAccumulator, Sample
from recorder.energy_keeper import ADVANCE_EVERY, EnergyKeeper
from recorder.storage.outbox import Outbox
from recorder.storage.state import StateStore
from recorder.timestamps import to_millis
from tests.live.helpers import address, reading

BERLIN = ZoneInfo("Europe/Berlin")  # UTC+2 in June: local midnight is 22:00 UTC
EAST = address(0xC286CC)
WEST = address(0xC2834B)


def ms(text: str) -> int:
    return to_millis(datetime.fromisoformat(text))


def samples(start: int, count: int, node: int, long_address: bytes | None, power: float) -> list[Sample]:
    return [
        Sample(4609, node, long_address, start + i * 20_000, power + i % 7, 150, 20.0) for i in range(count)
    ]


def test_running_today_is_each_series_day_total_and_starts_again_after_midnight() -> None:
    accumulator = EnergyAccumulator(BERLIN)
    assert accumulator.running_today() is None  # nothing integrated: no day yet
    evening = ms("2025-06-21T21:30:00+00:00")  # 23:30 in Berlin
    feed = [
        *samples(evening, 120, 1, EAST, 100.0),  # to 00:09:40
        *samples(evening, 120, 2, WEST, 50.0),
        *samples(evening, 120, 3, None, 10.0),  # written without a barcode
        *samples(ms("2025-06-21T21:40:00+00:00"), 30, 9, EAST, 30.0),  # EAST under a second node ID
    ]
    feed.sort(key=lambda s: s.measured_ms)
    before_midnight = [s for s in feed if s.measured_ms < ms("2025-06-21T22:03:00+00:00")]
    accumulator.feed(before_midnight)  # integrated through 21:58: still the first day
    today = accumulator.running_today()
    assert today is not None and today.day == date(2025, 6, 21)
    assert today.through_ms == before_midnight[-1].measured_ms - REORDER_WINDOW_MS
    # Exactly what the day's points say (the same sums), series of one optimizer added up.
    points = {(d.key, d.day): d.energy_wh for d in accumulator.open_days()}
    day = date(2025, 6, 21)
    east = math.fsum([points[((4609, 1, EAST), day)], points[((4609, 9, EAST), day)]])
    assert today.by_address[EAST] == east
    assert today.by_address[WEST] == points[((4609, 2, WEST), day)]
    assert today.by_gateway[4609] == today.total == math.fsum(points[(key, d)] for key, d in points)
    assert today.total > today.by_address[EAST] + today.by_address[WEST]  # node 3 counts too
    assert today.of_addresses([EAST, WEST, EAST]) == math.fsum([east, today.by_address[WEST]])

    # Integration passes local midnight: a new day, counted from 0.
    accumulator.feed([s for s in feed if s.measured_ms >= ms("2025-06-21T22:03:00+00:00")])
    after = accumulator.running_today()
    assert after is not None and after.day == date(2025, 6, 22)
    points = {(d.key, d.day): d.energy_wh for d in accumulator.open_days()}
    assert after.by_address[EAST] == points[((4609, 1, EAST), date(2025, 6, 22))]
    # Integrated through 00:04:40 (the reorder window behind the newest reading): 280 s of it.
    assert 100 * 280 / 3600 <= after.by_address[EAST] <= 106 * 280 / 3600
    # A clean stop integrates everything: the day's total is then the point's.
    accumulator.close()
    final = accumulator.running_today()
    assert final is not None and final.through_ms == feed[-1].measured_ms
    points = {(d.key, d.day): d.energy_wh for d in accumulator.open_days()}
    assert final.by_address[WEST] == points[((4609, 2, WEST), date(2025, 6, 22))]


class Sink:
    def __init__(self) -> None:
        self.days: list[DayTotals] = []

    def submit_energy(self, days: Iterable[DayTotals]) -> None:
        self.days.extend(days)

    def unsent_energy_days(self) -> set[date]:
        return set()


def test_the_keeper_makes_them_in_the_read_loop_only_when_asked(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path / "state.db")
    try:
        keeper = EnergyKeeper(store.engine, "Europe/Berlin", timedelta(minutes=10))
        keeper.start(Outbox(store.engine), Sink())
        # tests.live.helpers readings start at 12:00 UTC, every 20 s.
        at = datetime.fromisoformat("2025-06-21T12:00:00+00:00")
        for step in range(60):
            keeper.feed([reading(1, step * 20, long_address=EAST)])
            keeper.tick(at + timedelta(seconds=step * 20))
        assert keeper._today is None  # nobody asked: nothing was made
        assert keeper.today() is None  # asking returns what there is, and asks for more
        keeper.tick(at + timedelta(seconds=60 * 20) + ADVANCE_EVERY)
        made = keeper.today()
        assert made is not None and made.day == date(2025, 6, 21)
        again = keeper.accumulator.running_today()
        assert again is not None and made.by_address[EAST] == again.by_address[EAST]
        assert made.by_address[EAST] > 0
        # Between advances nothing is remade: the same object.
        keeper.tick(at + timedelta(seconds=60 * 20) + ADVANCE_EVERY + timedelta(seconds=1))
        assert keeper.today() is made
        # A clean stop makes the final totals (the publisher's last pass shows them).
        keeper.close()
        final = keeper.today()
        assert final is not made and final is not None
        assert final.by_address[EAST] > made.by_address[EAST]
        assert final.through_ms == to_millis(at + timedelta(seconds=59 * 20))
    finally:
        store.close()
