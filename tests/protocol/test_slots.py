from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.protocol.slots import (
    SLOT_CYCLE,
    SlotClock,
    add_slots,
    is_valid_slot_counter,
    slot_counter_from_index,
    slot_index,
    slots_since,
)
from tests.helpers import T0


def test_epoch_layout_from_the_reference() -> None:
    # 0x0000..0x2EDF, then 0x4000..0x6EDF, ...: the top two bits count epochs.
    assert slot_index(0x2EDF) == 11999
    assert slot_index(0x4000) == 12000
    assert add_slots(0x2EDF, 1) == 0x4000
    assert add_slots(0xEEDF, 1) == 0x0000  # last slot of epoch 3 wraps to the start
    assert not is_valid_slot_counter(0x2EE0)
    with pytest.raises(ValueError):
        slot_index(0x3FFF)


@given(st.integers(0, SLOT_CYCLE - 1), st.integers(-100_000, 100_000))
def test_index_arithmetic_round_trips(index: int, delta: int) -> None:
    counter = slot_counter_from_index(index)
    assert is_valid_slot_counter(counter)
    assert slot_index(counter) == index
    later = add_slots(counter, delta)
    assert slots_since(counter, later) == delta % SLOT_CYCLE


def test_slot_clock_maps_counters_back_from_the_latest_observation() -> None:
    clock = SlotClock()
    assert clock.time_of(0x1000) is None  # nothing observed yet
    clock.observe(0xC000, T0)
    assert clock.time_of(0x8000) == T0 - timedelta(seconds=60)  # one epoch earlier
    assert clock.time_of(0x0000) == T0 - timedelta(seconds=180)
    assert clock.time_of(add_slots(0xC000, -4000)) == T0 - timedelta(seconds=20)
    # A report slightly ahead of the observation is placed after it, not ~4 minutes before.
    assert clock.time_of(add_slots(0xC000, 200)) == T0 + timedelta(seconds=1)
    assert clock.time_of(0x2EE0) is None  # impossible counter


def test_slot_clock_wraps_across_the_cycle() -> None:
    clock = SlotClock()
    clock.observe(0x0010, T0)  # just after the wrap
    assert clock.time_of(0xEEDF) == T0 - timedelta(milliseconds=5 * 17)


def test_slot_clock_result_depends_only_on_the_latest_observation() -> None:
    # What makes timestamps reproducible between a live run and a backfill of its archive.
    first, second = SlotClock(), SlotClock()
    first.observe(0x1234, T0 - timedelta(minutes=30))
    first.observe(0x2000, T0)
    second.observe(0x2000, T0)
    assert first.time_of(0x1F00) == second.time_of(0x1F00)
