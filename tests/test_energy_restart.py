"""Daily energy across restarts: a clean restart changes nothing, bit for bit; a power cut loses
at most what was integrated since the last checkpoint (10 minutes). Real SQLite, the real
in-flight set, outbox and energy keeper, readings decoded from the simulator.

The loop below is `recorder run`'s path reduced to what matters here: readings into memory
(`InFlight`, which announces the ready ones to the keeper), identity resolution in memory and in
the outbox, the keeper's tick, a sender that acknowledges a random share of what waits, and the
commit of what waited too long to the outbox (InfluxDB itself plays no part in the energy state;
`tests/test_energy_run.py` covers the points). A "power cut" abandons the process state at a
random step, without the clean stop; the next process opens the same database and goes on.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from recorder.energy import REORDER_WINDOW_MS, DayTotals
from recorder.energy_keeper import CHECKPOINT_EVERY, EnergyKeeper
from recorder.observer import MappingLearned
from recorder.pipeline import DecodePipeline
from recorder.reading import Reading
from recorder.sim.bus import BusSimulation
from recorder.sim.config import SimulationConfig
from recorder.storage.inflight import InFlight
from recorder.storage.outbox import Outbox
from recorder.storage.state import StateStore
from recorder.timestamps import to_millis

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
        _, new_readings, new_learned = pipeline.feed(data, at)
        readings.extend(new_readings)
        learned.extend(o for o in new_learned if isinstance(o, MappingLearned))
        if last is None or at - last >= timedelta(seconds=5):
            batches.append((readings, learned, at))
            readings, learned, last = [], [], at
    batches.append((readings, learned, CONFIG.end))
    return batches


COMMITS = commits()


COMMIT_WAIT = 30.0  # seconds a reading waits in memory before it is committed (commit interval / 2)


def record(db: Path, batches: list[Commit], rng: random.Random, *, clean_stop: bool) -> Collector:
    """One process's life on `db`: start, take `batches`, then a clean stop or a power cut."""
    store = StateStore.open(db)
    keeper = EnergyKeeper(store.engine, ZONE, timedelta(minutes=10))
    outbox = Outbox(store.engine, on_ready=keeper.feed)
    inflight = InFlight(outbox, on_ready=keeper.feed)
    identities = store.identity_map()
    sink = Collector()
    keeper.start(outbox, sink)
    outbox.release(identities)
    for readings, learned, at in batches:
        arrived = at.timestamp()  # source time stands in for the monotonic clock
        inflight.add(readings, arrived)
        for mapping in learned:  # what the observer learned; the state store keeps it for the next start
            key = (mapping.gateway_id, mapping.node_id)
            identities.learn(key, mapping.long_address, mapping.source, to_millis(mapping.observed_at))
        store.record_outputs(learned)
        if learned:
            keys = {(m.gateway_id, m.node_id) for m in learned}
            inflight.resolve(identities, keys)
            outbox.release(identities, keys)
        keeper.tick(at)
        # The sender: InfluxDB acknowledges some of what waits in memory, and some outbox rows.
        taken = inflight.take(rng.randint(0, 40))
        outbox.acknowledge_readings(inflight.finish(taken))
        outbox.acknowledge([item.id for item in outbox.next_batch(rng.randint(0, 10))])
        inflight.commit(arrived - COMMIT_WAIT, at)
    if clean_stop:
        at = batches[-1][2] if batches else CONFIG.end
        inflight.commit(None, at)
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
    assert outbox_states(db) == {}  # everything sent
    return energy_rows(db), sink


def test_the_reference_run_has_two_local_days_of_energy(
    uninterrupted: tuple[list[tuple[Any, ...]], Collector],
) -> None:
    rows, sink = uninterrupted
    assert {row[3] for row in rows} == {"2025-06-21", "2025-06-22"}
    assert len({row[:3] for row in rows}) == CONFIG.nodes
    assert all(totals.energy_wh > 0 for totals in sink.points.values())


def daily_energy(rows: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], float]:
    """Energy per (gateway, node, long address, day)."""
    totals: dict[tuple[Any, ...], float] = {}
    for gateway_id, node_id, address, day, _hour, energy_wh, *_ in rows:
        key = (gateway_id, node_id, address, day)
        totals[key] = totals.get(key, 0.0) + energy_wh
    return totals


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_a_power_cut_loses_at_most_the_energy_since_the_last_checkpoint(
    tmp_path: Path, seed: int, uninterrupted: tuple[list[tuple[Any, ...]], Collector]
) -> None:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(COMMITS)), 3))
    db = tmp_path / "state.db"
    previous = 0
    for cut in cuts:
        record(db, COMMITS[previous:cut], rng, clean_stop=False)  # the power goes at `cut`
        previous = cut
    record(db, COMMITS[previous:], rng, clean_stop=True)
    rows, _ = uninterrupted
    after, reference = daily_energy(energy_rows(db)), daily_energy(rows)
    assert after.keys() == reference.keys()
    # What a cut can lose: the readings since the keeper's last checkpoint (at most
    # CHECKPOINT_EVERY of source time, less the reorder window still open then) that InfluxDB had
    # acknowledged, so they were not in the outbox to re-read. Across such a hole the next
    # reading is joined by a straight line (when within the max gap) or the hole is uncovered
    # time, so per optimizer and day the difference is at most its peak power over that span,
    # for each cut.
    span_h = (CHECKPOINT_EVERY.total_seconds() + REORDER_WINDOW_MS / 1000 + 2 * COMMIT_WAIT + 60) / 3600
    peak = {key[:4]: 0.0 for key in reference}
    for gateway_id, node_id, address, day, _hour, _e, _c, _u, _n, peak_w, *_ in rows:
        key = (gateway_id, node_id, address, day)
        peak[key] = max(peak[key], peak_w)
    changed = 0.0
    for key, energy in reference.items():
        assert abs(after[key] - energy) <= len(cuts) * peak[key] * span_h + 1e-9, key
        changed += abs(after[key] - energy)
    assert changed > 0  # the cuts were real: what was integrated since each last checkpoint is gone


def test_clean_restarts_change_nothing(
    tmp_path: Path, uninterrupted: tuple[list[tuple[Any, ...]], Collector]
) -> None:
    db = tmp_path / "state.db"
    middle = len(COMMITS) // 2
    record(db, COMMITS[:middle], random.Random(1), clean_stop=True)
    record(db, COMMITS[middle:], random.Random(2), clean_stop=True)
    assert energy_rows(db) == uninterrupted[0]
    assert outbox_states(db) == {}
