from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.protocol.slots import (
    PLACEMENT_HORIZON_MS,
    SLOT_CYCLE,
    add_slots,
    is_valid_slot_counter,
    measured_ms,
    slot_counter_from_index,
    slot_index,
    slots_since,
)


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


T0_MS = 1_750_507_200_000


def test_measurement_time_counts_back_from_the_response_that_carried_the_report() -> None:
    assert measured_ms(T0_MS, 0xC000, 0x8000) == T0_MS - 60_000  # one epoch earlier
    assert measured_ms(T0_MS, 0xC000, 0x0000) == T0_MS - 180_000
    assert measured_ms(T0_MS, 0xC000, add_slots(0xC000, -4000)) == T0_MS - 20_000
    # A report slightly ahead of the response is placed after it, not ~4 minutes before.
    assert measured_ms(T0_MS, 0xC000, add_slots(0xC000, 200)) == T0_MS + 1_000
    assert measured_ms(T0_MS, 0xC000, add_slots(0xC000, 2000)) == T0_MS - 5 * (SLOT_CYCLE - 2000)
    assert measured_ms(T0_MS, 0xC000, add_slots(0xC000, 1999)) == T0_MS + 5 * 1999


def test_measurement_time_wraps_across_the_cycle() -> None:
    assert measured_ms(T0_MS, 0x0010, 0xEEDF) == T0_MS - 5 * 17  # just after the wrap


@pytest.mark.parametrize("impossible", [0x2EE0, 0x3FFF, 0x6EE0, 0xFFFF])
def test_a_response_with_an_impossible_counter_places_nothing(impossible: int) -> None:
    """Nothing to count back from: the report is not placed (not against an older response)."""
    assert measured_ms(T0_MS, impossible, 0x1000) is None


@given(st.integers(0, SLOT_CYCLE - 1), st.integers(-1999, SLOT_CYCLE - 2001))
def test_placement_is_never_further_back_than_the_horizon(response: int, back: int) -> None:
    gateway = slot_counter_from_index(response)
    measured = measured_ms(T0_MS, gateway, add_slots(gateway, -back))
    assert measured == T0_MS - 5 * back
    assert T0_MS - PLACEMENT_HORIZON_MS <= measured <= T0_MS + 5 * 2000
