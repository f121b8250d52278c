"""The in-flight set and the outbox name every reading that becomes ready to send, with the
identity it is sent with: the one decision of the identity hold, which the energy accumulator
follows (real SQLite)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from recorder.identity import IdentityMap
from recorder.reading import Reading
from recorder.storage.db import open_database
from recorder.storage.inflight import InFlight
from recorder.storage.outbox import Outbox
from recorder.timestamps import to_millis
from tests.helpers import T0

ADDRESS = bytes.fromhex("04C05B40009A57A2")
T0_MS = to_millis(T0)


def reading(node: int, seconds: int, address: bytes | None) -> Reading:
    at = T0_MS + seconds * 1000
    return (4609, node, at, at, 0x1000, 700, 350, 255, 1000, 250, 150, address)


def test_ready_readings_are_announced_with_their_identity(tmp_path: Path) -> None:
    announced: list[tuple[int, int, bytes | None]] = []

    def on_ready(readings: Sequence[Reading]) -> None:
        announced.extend((r[1], (r[2] - T0_MS) // 1000, r[11]) for r in readings)

    outbox = Outbox(open_database(tmp_path / "state.db"), on_ready=on_ready)
    outbox.add([reading(2, 0, ADDRESS), reading(3, 0, None), reading(4, 0, None), reading(5, 0, None)], T0)
    # A ready reading was announced when it arrived in memory (`InFlight`); held ones wait.
    assert announced == []
    identities = IdentityMap()
    identities.learn((4609, 3), ADDRESS, "test", T0_MS + 30_000)
    assert outbox.release(identities) == 1
    assert announced == [(3, 0, ADDRESS)]  # released with the barcode valid at its time
    later = T0 + timedelta(hours=40)
    assert outbox.expire(later, timedelta(hours=36), "write") == 2
    assert sorted(announced[1:]) == [(4, 0, None), (5, 0, None)]  # given up on: no barcode
    outbox.add([reading(6, 10, None)], T0)
    assert outbox.expire(later, timedelta(hours=36), "drop") == 1
    assert len(announced) == 3  # dropped readings never become ready
    # Acknowledged rows are deleted at once: energy needs nothing kept on disk.
    batch = outbox.next_batch(10)
    outbox.acknowledge([item.id for item in batch])
    assert outbox.depth() == {"ready": 0, "held": 0, "parked": 0}
    assert len(announced) == 3  # neither sending nor acknowledging announces anything


def test_readings_in_memory_are_announced_when_they_arrive_ready_or_are_resolved(tmp_path: Path) -> None:
    announced: list[tuple[int, bytes | None]] = []
    outbox = Outbox(
        open_database(tmp_path / "state.db"),
        on_ready=lambda rs: announced.extend((r[1], r[11]) for r in rs),
    )
    inflight = InFlight(outbox, on_ready=lambda rs: announced.extend((r[1], r[11]) for r in rs))
    inflight.add([reading(2, 0, ADDRESS), reading(3, 0, None), reading(4, 0, None)], arrived=0.0)
    assert announced == [(2, ADDRESS)]
    identities = IdentityMap()
    identities.learn((4609, 3), ADDRESS, "test", T0_MS)
    assert inflight.resolve(identities, {(4609, 3)}) == 1
    assert announced[1:] == [(3, ADDRESS)]
    # Committing (ready or held) announces nothing more; the held one is announced by the
    # outbox when its barcode is learned there, once.
    inflight.commit(None, T0)
    assert len(announced) == 2 and outbox.depth()["held"] == 1
    identities.learn((4609, 4), ADDRESS[:-1] + b"\x01", "test", T0_MS)
    assert inflight.resolve(identities) == 0  # committed: the outbox's now
    assert outbox.release(identities) == 1
    assert announced[2:] == [(4, ADDRESS[:-1] + b"\x01")]
