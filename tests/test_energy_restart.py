"""A restart, or a power cut, changes nothing in the daily energy of readings that reached the
outbox: real SQLite, the real outbox and energy keeper, readings decoded from the simulator.

The loop below is `recorder run`'s commit path reduced to what matters here: readings committed
to the outbox (which feeds the energy keeper), identity releases, the keeper's tick, and a sender
that acknowledges a random share of the ready rows (InfluxDB itself plays no part in the energy
state; `tests/test_energy_run.py` covers the points). A "power cut" abandons the process state at
a random commit, without the clean stop; the next process opens the same database and goes on.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from recorder.energy import DayTotals
from recorder.energy_keeper import EnergyKeeper
from recorder.observer import MappingLearned, Reading
from recorder.pipeline import DecodePipeline
from recorder.sim.bus import BusSimulation
from recorder.sim.config import SimulationConfig
from recorder.storage.outbox import Outbox
from recorder.storage.state import StateStore

ZONE = "Asia/Kolkata"
CONFIG = SimulationConfig(
    start=datetime.fromisoformat("2025-06-21T15:30:00+00:00"),  # through local midnight (18:30 UTC)
    duration=timedelta(hours=4, minutes=30),
    nodes=8,
    seed=11,
    noise=0.005,
)


class Collector:
    """Stands in for the sender: keeps the daily totals it is given (all acknowledged at once)."""

    def __init__(self) -> None:
        self.points: dict[tuple[Any, date], DayTotals] = {}

    def submit_energy(self, days: Iterable[DayTotals]) -> None:
        for totals in days:
            self.points[(totals.key, totals.day)] = totals

    def unsent_energy_days(self) -> set[date]:
        return set()


Commit = tuple[list[Reading], list[MappingLearned], datetime]


def commits() -> list[Commit]:
    """The simulated bus decoded once, in five-second commits (`recorder run` commits every
    flush interval; five seconds keeps this test quick)."""
    pipeline = DecodePipeline()
    batches: list[Commit] = []
    readings: list[Reading] = []
    learned: list[MappingLearned] = []
    last: datetime | None = None
    for data, seconds in BusSimulation(CONFIG).run():
        at = CONFIG.start + timedelta(seconds=seconds)
        _, outputs = pipeline.feed(data, at)
        readings.extend(o for o in outputs if isinstance(o, Reading))
        learned.extend(o for o in outputs if isinstance(o, MappingLearned))
        if last is None or at - last >= timedelta(seconds=5):
            batches.append((readings, learned, at))
            readings, learned, last = [], [], at
    batches.append((readings, learned, CONFIG.end))
    return batches


COMMITS = commits()


def record(db: Path, batches: list[Commit], rng: random.Random, *, clean_stop: bool) -> Collector:
    """One process's life on `db`: start, commit `batches`, then a clean stop or a power cut."""
    store = StateStore.open(db)
    keeper = EnergyKeeper(store.engine, ZONE, timedelta(minutes=10))
    outbox = Outbox(store.engine, on_ready=keeper.feed)
    identities = store.identity_map()
    sink = Collector()
    keeper.start(outbox, sink)
    outbox.release(identities)
    for readings, learned, at in batches:
        for mapping in learned:  # what the observer learned; the state store keeps it for the next start
            key = (mapping.gateway_id, mapping.node_id)
            identities.learn(key, mapping.long_address, mapping.source, mapping.observed_at)
        outbox.add(readings, at)
        store.record_outputs(learned)
        if learned:
            outbox.release(identities, {(m.gateway_id, m.node_id) for m in learned})
        keeper.tick(at)
        batch = outbox.next_batch(rng.randint(0, 40))
        outbox.acknowledge([item.id for item in batch])
    if clean_stop:
        keeper.close()
        while batch := outbox.next_batch(1000):
            outbox.acknowledge([item.id for item in batch])
        keeper.finish()
    store.close()
    return sink


def energy_rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT s.gateway_id, s.node_id, s.long_address, h.day, h.hour, h.energy_wh, h.covered_ms, "
            "h.uncovered_ms, h.readings, h.peak_w, h.rssi_sum, h.temperature_max "
            "FROM energy_hours h JOIN energy_series s ON s.id = h.series_id ORDER BY 1, 2, 3, 4, 5"
        ).fetchall()


def outbox_states(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as connection:
        return dict(connection.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[tuple[Any, ...]], Collector]:
    db = tmp_path_factory.mktemp("uninterrupted") / "state.db"
    sink = record(db, COMMITS, random.Random(0), clean_stop=True)
    assert outbox_states(db) == {}  # everything sent, and every sent row forgotten
    return energy_rows(db), sink


def test_the_reference_run_has_two_local_days_of_energy(
    uninterrupted: tuple[list[tuple[Any, ...]], Collector],
) -> None:
    rows, sink = uninterrupted
    assert {row[3] for row in rows} == {"2025-06-21", "2025-06-22"}
    assert len({row[:3] for row in rows}) == CONFIG.nodes
    assert all(totals.energy_wh > 0 for totals in sink.points.values())


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_power_cuts_at_random_commits_change_nothing(
    tmp_path: Path, seed: int, uninterrupted: tuple[list[tuple[Any, ...]], Collector]
) -> None:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(COMMITS)), 3))
    db = tmp_path / "state.db"
    previous = 0
    left_behind = []
    for cut in cuts:
        record(db, COMMITS[previous:cut], rng, clean_stop=False)  # the power goes at `cut`
        left_behind.append(outbox_states(db).get("sent", 0) + outbox_states(db).get("ready", 0))
        previous = cut
    assert max(left_behind) > 0  # readings the lost process state had integrated, to be re-read
    sink = record(db, COMMITS[previous:], rng, clean_stop=True)
    rows, reference = uninterrupted
    assert energy_rows(db) == rows  # bit for bit
    # The last process re-sent the open days and sent the rest: every day's final point agrees.
    assert {key: (t.energy_wh, t.uncovered_seconds) for key, t in sink.points.items()} == {
        key: (t.energy_wh, t.uncovered_seconds) for key, t in reference.points.items() if key in sink.points
    }


def test_clean_restarts_change_nothing(
    tmp_path: Path, uninterrupted: tuple[list[tuple[Any, ...]], Collector]
) -> None:
    db = tmp_path / "state.db"
    middle = len(COMMITS) // 2
    record(db, COMMITS[:middle], random.Random(1), clean_stop=True)
    record(db, COMMITS[middle:], random.Random(2), clean_stop=True)
    assert energy_rows(db) == uninterrupted[0]
    assert outbox_states(db) == {}
