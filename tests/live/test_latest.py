"""The latest-reading view: newest by measurement time, freshness, and identity as the outbox has it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from recorder.identity import IdentityMap
from recorder.live.latest import HELD, RESOLVED, UNRESOLVED, LatestReadings
from recorder.protocol.barcode import barcode_from_address
from recorder.reading import LONG_ADDRESS
from recorder.storage.outbox import Outbox
from recorder.storage.state import Labels, StateStore
from recorder.timestamps import to_millis
from tests.live.helpers import GATEWAY, T0, FakeMonotonic, address, measured_at, reading, received_at


def view(
    clock: FakeMonotonic | None = None, stale_after: timedelta = timedelta(minutes=10)
) -> LatestReadings:
    return LatestReadings(stale_after, monotonic=clock or FakeMonotonic())


def test_keeps_the_latest_by_measurement_time_not_by_arrival() -> None:
    latest = view()
    newer = reading(2, 40, long_address=address(2), current_in_raw=1000)
    older = reading(2, 20, long_address=address(2), current_in_raw=1500)  # delivered late
    latest.observe([newer], T0)
    latest.observe([older, reading(3, 10, long_address=address(3))], T0)
    optimizers = {o.key: o for o in latest.snapshot().optimizers}
    assert set(optimizers) == {(GATEWAY, 2), (GATEWAY, 3)}
    assert optimizers[(GATEWAY, 2)].reading.measured_at == measured_at(newer)
    assert optimizers[(GATEWAY, 2)].reading.current_in == 5.0


def test_readings_from_the_observer_as_the_read_loop_hands_them_over() -> None:
    """`recorder run` gives the view the observer's readings of each chunk (`Observed.readings`)."""
    from recorder.observer import Observer
    from recorder.protocol import encode
    from recorder.protocol.pv import application as app
    from recorder.protocol.stack import Stack
    from tests.protocol import reference_frames as ref

    data = encode.receive_request(GATEWAY, 1) + encode.receive_response(
        GATEWAY, 0x00FE, 1, 0xE000, [encode.packet(app.POWER_REPORT, 9, ref.POWER_REPORT_15)]
    )
    latest = view()
    latest.observe(Observer().feed(Stack().feed(data, T0)).readings, T0)
    (optimizer,) = latest.snapshot().optimizers
    assert optimizer.key == (GATEWAY, 9) and optimizer.reading.power == 278.96625
    assert optimizer.identity == HELD


def test_values_in_si_units_through_the_one_adapter() -> None:
    latest = view()
    latest.observe([reading(2, 0, long_address=address(2), duty_cycle_raw=0)], T0)
    (optimizer,) = latest.snapshot().optimizers
    value = optimizer.reading
    assert (value.voltage_in, value.current_in, value.power) == (32.5, 9.0, 292.5)
    assert value.voltage_out == 32.5 and value.temperature == 55.3 and value.rssi == 180
    assert value.duty_cycle == 0 and value.current_out is None
    assert value.barcode == barcode_from_address(address(2)) and optimizer.identity == RESOLVED


def test_age_and_staleness_follow_source_time_then_the_monotonic_clock() -> None:
    clock = FakeMonotonic()
    latest = view(clock, stale_after=timedelta(minutes=10))
    # Source time 30 s after the measurement (a replay: an old date is not stale in itself).
    latest.observe([reading(2, 0, long_address=address(2))], T0 + timedelta(seconds=30))
    (optimizer,) = latest.snapshot().optimizers
    assert optimizer.age == 30 and not optimizer.stale
    clock.now += 569  # the bus went silent: the clock keeps running
    (optimizer,) = latest.snapshot().optimizers
    assert optimizer.age == 599 and not optimizer.stale
    clock.now += 2
    (optimizer,) = latest.snapshot().optimizers
    assert optimizer.stale and latest.now() == T0 + timedelta(seconds=601)


def test_labels_are_joined_by_long_address() -> None:
    latest = view()
    latest.observe([reading(2, 0, long_address=address(2)), reading(3, 0, long_address=address(3))], T0)
    optimizers = latest.snapshot({address(2): Labels("east 3", "A1")}).optimizers
    named = {o.key[1]: (o.name, o.string) for o in optimizers}
    assert named == {2: ("east 3", "A1"), 3: (None, None)}


def test_one_optimizer_seen_under_two_node_ids_appears_once_with_its_latest_reading() -> None:
    latest = view()
    latest.observe([reading(2, 0, long_address=address(2)), reading(0x8002, 20, long_address=address(2))], T0)
    (optimizer,) = latest.snapshot().optimizers
    assert optimizer.reading.node_id == 0x8002


def test_an_empty_view_has_no_optimizers_and_no_clock() -> None:
    latest = view()
    assert latest.snapshot().optimizers == [] and latest.now() is None


# ---- identity: the view follows the outbox's own decisions ----------------------------------


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    store = StateStore.open(tmp_path / "state.db")
    return Outbox(store.engine)


def test_held_readings_are_released_exactly_as_the_outbox_releases_them(outbox: Outbox) -> None:
    held = [reading(2, 0), reading(3, 30)]  # no barcode known when they were decoded
    outbox.add(held, T0)
    latest = view()
    latest.observe(held, T0 + timedelta(seconds=31))
    assert {o.identity for o in latest.snapshot().optimizers} == {HELD}
    assert not any(o.published for o in latest.snapshot().optimizers)

    # Node 2 is learned: node 2 had address A until 10 s, then a replacement (B) from 10 s on;
    # node 3 is not learned.
    identities = IdentityMap()
    identities.learn((GATEWAY, 2), address(0xA), "node_table", to_millis(T0 - timedelta(hours=1)))
    identities.learn((GATEWAY, 2), address(0xB), "topology_report", to_millis(T0 + timedelta(seconds=10)))
    outbox.release(identities, {(GATEWAY, 2)})
    latest.identify(identities, {(GATEWAY, 2)})

    released = {item.reading[:2]: item.reading[LONG_ADDRESS] for item in outbox.next_batch(10)}
    shown = {o.key: o for o in latest.snapshot().optimizers}
    assert released == {(GATEWAY, 2): address(0xA)}  # measured at 0 s: the old unit
    assert shown[(GATEWAY, 2)].identity == RESOLVED
    assert shown[(GATEWAY, 2)].reading.long_address == released[(GATEWAY, 2)]
    assert shown[(GATEWAY, 2)].reading.barcode == barcode_from_address(address(0xA))
    assert shown[(GATEWAY, 3)].identity == HELD

    # A newer reading of node 2 (after the replacement) comes already resolved by the observer.
    latest.observe([reading(2, 60, long_address=address(0xB))], T0 + timedelta(seconds=61))
    shown = {o.key: o for o in latest.snapshot().optimizers}
    assert shown[(GATEWAY, 2)].reading.barcode == barcode_from_address(address(0xB))


def test_release_of_all_keys_resolves_every_held_entry(outbox: Outbox) -> None:
    latest = view()
    latest.observe([reading(2, 0), reading(3, 0)], T0)
    identities = IdentityMap()
    identities.learn((GATEWAY, 3), address(3), "import", to_millis(T0))
    latest.identify(identities)  # keys=None: as after a reload of mappings from the database
    shown = {o.key[1]: o.identity for o in latest.snapshot().optimizers}
    assert shown == {2: HELD, 3: RESOLVED}


@pytest.mark.parametrize(("policy", "identity"), [("write", UNRESOLVED), ("drop", HELD)])
def test_a_node_appears_without_barcode_once_the_outbox_wrote_it_after_the_hold(
    outbox: Outbox, policy: str, identity: str
) -> None:
    hold = timedelta(hours=36)
    first, recent = reading(5, 0), reading(5, hold.total_seconds() + 100)
    outbox.add([first, recent], T0)
    latest = view()
    latest.observe([first, recent], received_at(recent))

    written_unresolved: set[tuple[int, int]] = set()
    expired = outbox.expire(T0 + hold + timedelta(seconds=50), hold, policy, written_unresolved)
    latest.identify(IdentityMap(), hold_expired=written_unresolved)

    assert expired == 1  # only the first reading waited longer than the hold
    assert written_unresolved == ({(GATEWAY, 5)} if policy == "write" else set())
    (optimizer,) = latest.snapshot().optimizers
    assert optimizer.identity == identity and optimizer.reading.barcode is None
    assert optimizer.published == (policy == "write")
    assert optimizer.reading.measured_at == measured_at(recent)
