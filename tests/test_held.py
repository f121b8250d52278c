"""Readings waiting for identity during a backfill (`recorder.backfill.held`): bounded memory, nothing lost."""

from __future__ import annotations

from pathlib import Path

from recorder.backfill.held import HeldReadings
from recorder.identity import IdentityMap
from recorder.reading import Reading

GATEWAY = 4609
OLD, NEW = b"\x04\xc0\x5b\x40\x00\x00\x00\x01", b"\x04\xc0\x5b\x40\x00\x00\x00\x02"
T0_MS = 1_750_500_000_000


def reading(node: int, seconds: int) -> Reading:
    return (
        GATEWAY,
        node,
        T0_MS + 1000 * seconds,
        T0_MS + 1000 * seconds + 3000,
        7,
        700,
        350,
        255,
        900,
        250,
        150,
        None,
    )


def test_beyond_the_limit_readings_wait_on_disk_and_come_back_resolved(tmp_path: Path) -> None:
    held = HeldReadings(tmp_path, memory_limit=100)
    for second in range(1000):
        held.add(reading(2 + second % 4, second))
    assert len(held) == 1000 and 900 <= held.spilled < 1000  # at most the limit in memory
    assert len(list(tmp_path.iterdir())) == 1  # the scratch directory
    identities = IdentityMap()
    identities.learn((GATEWAY, 3), OLD, "node_table", T0_MS + 500_000)
    identities.learn((GATEWAY, 3), NEW, "topology_report", T0_MS + 600_000)
    released = held.release((GATEWAY, 3), identities)
    assert sorted(r[2] for r in released) == [T0_MS + 1000 * s for s in range(1, 1000, 4)]
    # Each resolved by its measurement time: the first interval also covers earlier times.
    assert all(r[11] == (OLD if r[2] < T0_MS + 600_000 else NEW) for r in released)
    assert all(r[:11] == reading(3, (r[2] - T0_MS) // 1000)[:11] for r in released)
    assert len(held) == 750
    assert held.release((GATEWAY, 9), identities) == []  # nothing waits for it
    rest = [r for batch in held.drain(batch_size=64) for r in batch]
    assert sorted(rest) == sorted(reading(2 + s % 4, s) for s in range(1000) if s % 4 != 1)
    assert len(held) == 0
    held.close()
    assert list(tmp_path.iterdir()) == []


def test_a_node_still_unknown_keeps_waiting(tmp_path: Path) -> None:
    held = HeldReadings(tmp_path, memory_limit=10)
    for second in range(30):
        held.add(reading(5, second))
    assert held.release((GATEWAY, 5), IdentityMap()) == []
    assert len(held) == 30
    held.close()


def test_few_readings_never_touch_the_disk(tmp_path: Path) -> None:
    held = HeldReadings(tmp_path, memory_limit=100)
    for second in range(100):
        held.add(reading(2, second))
    assert held.spilled == 0 and list(tmp_path.iterdir()) == []
    identities = IdentityMap()
    identities.learn((GATEWAY, 2), OLD, "node_table", T0_MS)
    assert len(held.release((GATEWAY, 2), identities)) == 100 and len(held) == 0
    held.close()


def test_readings_of_one_node_and_millisecond_are_counted_as_one_point(tmp_path: Path) -> None:
    """The scratch file keeps one reading per node and measurement millisecond, as `run`'s outbox
    does (they are one point in InfluxDB); the others are counted, not lost in silence."""
    held = HeldReadings(tmp_path, memory_limit=5)
    for second in (1, 2, 2, 3, 3, 3):  # the sixth moves all six to the scratch file
        held.add(reading(5, second))
    assert held.same_point == 3
    drained = [r for batch in held.drain() for r in batch]
    assert sorted(r[2] for r in drained) == [T0_MS + 1000, T0_MS + 2000, T0_MS + 3000]
    held.close()


def test_drain_gives_each_node_in_measurement_order_so_energy_can_be_fed_batch_by_batch(
    tmp_path: Path,
) -> None:
    """The end of the input feeds the unresolved readings' daily energy batch by batch (memory
    stays flat); that is exact only if each node's readings come in measurement order, whether
    they waited in memory or in the scratch file, and however the input interleaved them."""
    arrivals = [(2 + index % 3, (index * 7919) % 600) for index in range(600)]  # nodes, out of order
    for limit in (10_000, 50):  # all in memory; nearly all in the scratch file
        held = HeldReadings(tmp_path, memory_limit=limit)
        for node, second in arrivals:
            held.add(reading(node, second))
        assert (held.spilled > 0) == (limit == 50)
        drained = [r for batch in held.drain(batch_size=64) for r in batch]
        assert [r[:3] for r in drained] == sorted({r[:3] for r in drained})
        assert len(drained) == len(set(arrivals))
        held.close()
