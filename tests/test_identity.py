from __future__ import annotations

from datetime import timedelta

from recorder.identity import IdentityMap
from recorder.timestamps import to_millis
from tests.helpers import T0


def ms(delta: timedelta = timedelta(0)) -> int:
    return to_millis(T0 + delta)


A, B = b"\x04\xc0\x5b\x40\x00\x00\x00\x01", b"\x04\xc0\x5b\x40\x00\x00\x00\x02"
KEY = (0x1201, 5)


def test_first_mapping_also_covers_earlier_times() -> None:
    identities = IdentityMap()
    assert identities.learn(KEY, A, "topology_report", ms()) == (True, None)
    assert identities.resolve(KEY, ms(-timedelta(hours=1))) == A
    assert identities.learn(KEY, A, "node_table", ms(timedelta(hours=5))) == (False, A)
    assert len(identities.intervals(KEY)) == 1


def test_change_opens_a_new_interval_and_resolution_follows_measurement_time() -> None:
    identities = IdentityMap()
    identities.learn(KEY, A, "node_table", ms())
    changed_at = ms(timedelta(hours=2))
    assert identities.learn(KEY, B, "topology_report", changed_at) == (True, A)
    assert identities.resolve(KEY, changed_at - 1000) == A
    assert identities.resolve(KEY, changed_at) == B
    assert identities.current(KEY) == B
    assert [interval.long_address for interval in identities.intervals(KEY)] == [A, B]


def test_older_evidence_is_inserted_in_time_order() -> None:
    identities = IdentityMap()
    identities.learn(KEY, B, "node_table", ms())
    assert identities.learn(KEY, A, "import", ms(-timedelta(days=1))) == (True, B)
    assert identities.resolve(KEY, ms(-timedelta(hours=1))) == A
    assert identities.resolve(KEY, ms(timedelta(hours=1))) == B


def test_unknown_node_resolves_to_nothing() -> None:
    assert IdentityMap().resolve(KEY, ms()) is None


def test_nodes_with_one_interval_are_also_kept_by_number_for_the_placement_step() -> None:
    identities = IdentityMap()
    identities.learn(KEY, A, "node_table", ms())
    assert identities.single == {(0x1201 << 16) | 5: A}
    identities.learn(KEY, B, "topology_report", ms(timedelta(hours=2)))
    assert identities.single == {}  # two intervals: resolved by measurement time
