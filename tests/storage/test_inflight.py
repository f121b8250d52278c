"""Readings in memory before the outbox (`recorder.storage.inflight`), over a real SQLite file."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from recorder.identity import IdentityMap, Interval
from recorder.reading import Reading
from recorder.storage.inflight import InFlight
from recorder.storage.outbox import Outbox
from recorder.storage.state import StateStore
from recorder.timestamps import to_millis
from tests.helpers import T0

GATEWAY = 0x1201
ADDRESS = bytes.fromhex("04C05B4000C286CC")
T0_MS = to_millis(T0)


def make(node: int, at_ms: int, address: bytes | None) -> Reading:
    return (GATEWAY, node, at_ms, at_ms, 0x1000, 700, 350, 255, 1000, 250, 150, address)


def reading(number: int, *, resolved: bool = True) -> Reading:
    return make(number % 50, T0_MS + number * 1000, ADDRESS if resolved else None)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def outbox(db: Path) -> Outbox:
    return Outbox(StateStore.open(db).engine)


def rows(db: Path) -> list[tuple[int, int, str]]:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT node_id, measured_at, state FROM outbox ORDER BY id").fetchall()


def test_a_reading_sent_and_acknowledged_in_time_never_reaches_the_outbox(outbox: Outbox, db: Path) -> None:
    inflight = InFlight(outbox)
    inflight.add([reading(1), reading(2)], arrived=100.0)
    taken = inflight.take(10)
    assert [entry.reading for entry in taken] == [reading(1), reading(2)]
    assert inflight.take(10) == []  # in flight: not taken twice
    assert inflight.finish(taken) == []  # none was committed meanwhile
    assert inflight.commit(None, T0) == []
    assert rows(db) == [] and inflight.counts() == (0, 0)


def test_commit_takes_only_what_arrived_before_the_cutoff(outbox: Outbox, db: Path) -> None:
    inflight = InFlight(outbox)
    inflight.add([reading(1)], arrived=100.0)
    inflight.add([reading(2)], arrived=130.0)
    committed = inflight.commit(129.0, T0)
    assert [entry.reading[1] for entry in committed] == [1]
    assert [node for node, _, _ in rows(db)] == [1]
    assert inflight.counts() == (1, 0)
    assert [entry.reading[1] for entry in inflight.take(10)] == [2]  # the committed one is gone


def test_a_reading_committed_while_in_flight_is_deleted_when_acknowledged(outbox: Outbox, db: Path) -> None:
    inflight = InFlight(outbox)
    inflight.add([reading(1), reading(2)], arrived=100.0)
    taken = inflight.take(1)
    inflight.commit(None, T0)  # both committed, one of them on its way to InfluxDB
    assert len(rows(db)) == 2
    acknowledged = inflight.finish(taken)
    assert acknowledged == [reading(1)]
    outbox.acknowledge_readings(acknowledged)
    assert [node for node, _, _ in rows(db)] == [2]  # the other waits in the outbox
    assert inflight.take(10) == [] and inflight.counts() == (0, 0)


def test_a_failed_write_gives_readings_back_unless_they_are_in_the_outbox(outbox: Outbox, db: Path) -> None:
    inflight = InFlight(outbox)
    inflight.add([reading(1), reading(2)], arrived=100.0)
    first = inflight.take(1)
    inflight.give_back(first)
    again = inflight.take(2)
    assert [entry.reading[1] for entry in again] == [1, 2]
    inflight.commit(None, T0)
    inflight.give_back(again)  # InfluxDB down: the sender will find them in the outbox
    assert inflight.take(10) == [] and len(rows(db)) == 2


def test_held_readings_wait_and_are_committed_as_held_or_resolved_in_memory(outbox: Outbox, db: Path) -> None:
    inflight = InFlight(outbox)
    inflight.add([reading(1, resolved=False), reading(2, resolved=False)], arrived=100.0)
    assert inflight.take(10) == []  # never sent without a barcode
    assert inflight.counts() == (0, 2)
    identities = IdentityMap()
    identities.seed((GATEWAY, 1), Interval(T0_MS, ADDRESS, "node_table"))
    assert inflight.resolve(identities, {(GATEWAY, 1)}) == 1
    taken = inflight.take(10)
    assert [(entry.reading[1], entry.reading[11]) for entry in taken] == [(1, ADDRESS)]
    assert inflight.commit(None, T0, held_only=True)[0].reading[1] == 2
    assert rows(db) == [(2, int((T0 + timedelta(seconds=2)).timestamp() * 1000), "held")]
    inflight.finish(taken)
    assert inflight.counts() == (0, 0)


def test_full_when_more_than_the_limit_wait(outbox: Outbox) -> None:
    inflight = InFlight(outbox, limit=3)
    inflight.add([reading(n) for n in range(3)], arrived=1.0)
    assert not inflight.full
    inflight.add([reading(3)], arrived=2.0)
    assert inflight.full
    inflight.commit(None, T0)
    assert not inflight.full


def test_sender_and_committer_racing_lose_nothing_and_leave_no_acknowledged_row(
    outbox: Outbox, db: Path
) -> None:
    """Two threads as in `recorder run`: every reading ends acknowledged or in the outbox, not both."""
    inflight = InFlight(outbox)
    total = 3000
    acknowledged: set[tuple[int, int]] = set()
    stop = threading.Event()
    generator = random.Random(7)

    def sender() -> None:
        while not stop.is_set() or inflight.counts()[0]:
            taken = inflight.take(generator.randint(1, 40))
            time.sleep(generator.random() * 0.004)  # on the way to InfluxDB: the committer may strike
            if generator.random() < 0.3:  # InfluxDB said no
                inflight.give_back(taken)
                continue
            outbox.acknowledge_readings(inflight.finish(taken))
            acknowledged.update(key(entry.reading) for entry in taken)

    thread = threading.Thread(target=sender)
    thread.start()
    for number in range(total):
        at = T0_MS + number  # a unique key per reading
        inflight.add([make(1 + number % 7, at, ADDRESS)], float(number))
        if number % 97 == 0:
            inflight.commit(float(number - 50), T0)
            time.sleep(0.002)
    stop.set()
    thread.join(timeout=60)
    assert not thread.is_alive()
    inflight.commit(None, T0)
    with sqlite3.connect(db) as connection:
        stored = set(connection.execute("SELECT node_id, measured_at FROM outbox").fetchall())
    assert stored, "the committer should have caught some readings first"
    assert not (stored & acknowledged), "an acknowledged reading was left in the outbox"
    assert len(stored | acknowledged) == total, "a reading was lost"


def key(item: Reading) -> tuple[int, int]:
    return item[1], item[2]
