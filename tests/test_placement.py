"""The placement step (`recorder.placement`): one rule each for time, duplicates and identity."""

from __future__ import annotations

import random

import pytest

from recorder import placement
from recorder.identity import IdentityMap
from recorder.placement import Placement
from recorder.protocol.events import Event
from recorder.protocol.slots import PLACEMENT_HORIZON_MS, SLOT_CYCLE, add_slots, slot_counter_from_index
from recorder.reading import Reading, ReadingFields
from recorder.timestamps import to_millis
from tests.helpers import T0
from tests.test_observer import report_event as report

GATEWAY = 0x1201
T0_MS = to_millis(T0)


def place(step: Placement, events: list[Event]) -> list[ReadingFields]:
    out: list[Reading] = []
    step.place(events, out, lambda event: None)
    return [ReadingFields._make(reading) for reading in out]


def test_a_response_with_an_impossible_counter_places_nothing_and_says_so() -> None:
    step = Placement(IdentityMap())
    before = report(2, 0x1000, 0x1100, 0)
    # 12 s later a response whose counter is impossible carries a report measured 2 s before it.
    broken = report(3, add_slots(0x1100, 2000), 0x3FFF, 12)
    after = report(4, add_slots(0x1100, 2500), add_slots(0x1100, 2600), 13)
    readings = place(step, [before, broken, after])
    assert [r.node_id for r in readings] == [2, 4]
    assert step.counters.unplaced_reports == 1 and step.counters.readings == 2
    assert readings[1].measured_ms == T0_MS + 13_000 - 500  # from its own response, as always


def test_duplicates_within_three_seconds_only() -> None:
    step = Placement(IdentityMap())
    first = report(2, 0x1000, 0x1100, 0)
    again = report(2, 0x1000, 0x1120, 0.16)  # the same report re-delivered
    cycle_later = report(2, 0x1000, 0x1100, 240)  # the counter came round again: a new report
    assert len(place(step, [first, again, cycle_later])) == 2
    assert step.counters.duplicate_reports == 1


def test_identity_is_the_one_valid_at_the_measurement_time() -> None:
    identities = IdentityMap()
    old, new = b"\x04\xc0\x5b\x40\x00\x00\x00\x01", b"\x04\xc0\x5b\x40\x00\x00\x00\x02"
    identities.learn((GATEWAY, 2), old, "node_table", T0_MS - 3_600_000)
    identities.learn((GATEWAY, 2), new, "topology_report", T0_MS + 5_000)
    step = Placement(identities)
    # Both received after the change was learned; the first was measured before it.
    readings = place(
        step, [report(2, 0x1000, add_slots(0x1000, 2000), 10), report(2, 0x2000, add_slots(0x2000, 200), 10)]
    )
    assert [(r.measured_ms - T0_MS, r.long_address) for r in readings] == [(0, old), (9_000, new)]
    assert place(step, [report(3, 0x1000, 0x1100, 20)])[0].long_address is None  # not known yet


def test_duplicate_memory_is_bounded_by_time_and_forgets_nothing_that_matters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ten hours of ten nodes reporting at any slot, with re-deliveries: what is remembered stays
    a few minutes' worth, and the readings are those of a memory that forgets nothing."""
    rng = random.Random(3)
    events: list[Event] = []
    for step in range(10 * 180):  # one report per node every 20 s
        for node in range(2, 12):
            slot = slot_counter_from_index(rng.randrange(SLOT_CYCLE))
            response = add_slots(slot, rng.randrange(40, 4000))
            events.append(report(node, slot, response, step * 20 + node / 10))
            if rng.random() < 0.05:  # delivered again a little later
                events.append(report(node, slot, add_slots(response, 100), step * 20 + node / 10 + 0.5))
    window = (placement.PRUNE_EVERY_MS + PLACEMENT_HORIZON_MS + placement.DUPLICATE_WINDOW_MS) / 20_000

    def place_all() -> tuple[list[ReadingFields], int, int]:
        step = Placement(IdentityMap())
        readings: list[ReadingFields] = []
        most = 0
        for start in range(0, len(events), 50):
            readings += place(step, events[start : start + 50])
            most = max(most, step.remembered)
        return readings, most, step.counters.duplicate_reports

    pruned, most, duplicates = place_all()
    monkeypatch.setattr(placement, "PRUNE_EVERY_MS", 10**15)
    kept, everything, kept_duplicates = place_all()
    assert pruned == kept and duplicates == kept_duplicates > 500 and len(pruned) == 18_000
    assert most <= 10 * (window + 1) and everything > 10 * most
