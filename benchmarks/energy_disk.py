"""Bytes a day daily energy costs the state database (SD-card wear), before and after.

    python benchmarks/energy_disk.py [--nodes 135] [--hours 16] [--period 20]

Feeds a synthetic sunny day (every optimizer reporting every `--period` seconds for `--hours`
daylight hours) through the real energy keeper on a SQLite file, one step per second, with
InfluxDB up (it acknowledges everything within the second), in two designs side by side:

* **before** (the first energy branch, at the commit cadence `recorder run` has now): every
  reading committed to the outbox (one transaction every 30 s, as `InFlight` commits), marked
  `sent` when acknowledged (one more), and deleted by the energy checkpoint that covers it;
* **after** (this code): readings wait in memory (`InFlight`), are fed to the keeper when they
  are ready and forgotten when acknowledged; only the keeper's checkpoints (every 10 minutes)
  write.

Every 60 steps the WAL is measured and truncated (SQLite's own checkpoint never runs in
between: 60 steps stay under its 1000 pages), so the sum is every byte the run's transactions
wrote into the WAL. SQLite later copies WAL pages back into the database file: up to as many
bytes again in both designs. The machine the figures come from may be shared: they are bytes,
not times, and do not depend on it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text

from recorder.energy import DayTotals
from recorder.energy_keeper import EnergyKeeper
from recorder.reading import Reading
from recorder.storage.inflight import InFlight
from recorder.storage.outbox import Outbox
from recorder.storage.state import StateStore
from recorder.timestamps import to_millis

MEASURE_EVERY = 60  # steps (seconds) between WAL measurements
COMMIT_EVERY = 30  # steps between outbox commits in the "before" design (commit interval / 2)


class Discard:
    def submit_energy(self, days: Iterable[DayTotals]) -> None:
        pass

    def unsent_energy_days(self) -> set[date]:
        return set()


def readings(args: argparse.Namespace) -> Iterable[tuple[datetime, list[Reading]]]:
    start = datetime(2025, 6, 21, 4, tzinfo=UTC)
    seconds = int(args.hours * 3600)
    phase = {node: (node * args.period / args.nodes) for node in range(args.nodes)}
    for second in range(seconds):
        at = start + timedelta(seconds=second)
        batch = []
        for node in range(args.nodes):
            if (second - phase[node]) % args.period < 1:
                received_ms = to_millis(at)
                measured_ms = received_ms + int((phase[node] % 1) * 1000)
                level = max(0.05, 1 - abs(second - seconds / 2) / (seconds / 2))
                address = bytes((4, 0xC0, 0x5B, 0x40, 0, 0, node // 256, node % 256))
                values = (720, 700, 255, int(1900 * level), 400, 150)
                batch.append((4609, node + 2, measured_ms, received_ms, 0, *values, address))
        yield at, batch


def day(args: argparse.Namespace, directory: Path, design: str) -> tuple[int, int, float]:
    """(bytes into the WAL, energy checkpoints, seconds) of one simulated day."""
    db = directory / f"{design}.db"
    wal = Path(f"{db}-wal")
    store = StateStore.open(db)
    keeper = EnergyKeeper(store.engine, "UTC", timedelta(minutes=10))
    outbox = Outbox(store.engine, on_ready=keeper.feed)
    inflight = InFlight(outbox, on_ready=keeper.feed)
    keeper.start(outbox, Discard())
    written = 0

    def measure() -> None:
        nonlocal written
        written += wal.stat().st_size if wal.exists() else 0
        with store.engine.connect() as connection:
            connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))

    if design == "before":
        original = keeper.store.checkpoint

        def checkpoint_and_forget(changes, settings):  # type: ignore[no-untyped-def]
            original(changes, settings)
            with store.engine.begin() as connection:  # the old design deleted them in the same one
                connection.execute(text("DELETE FROM outbox WHERE state = 'sent'"))

        keeper.store.checkpoint = checkpoint_and_forget  # type: ignore[method-assign]
    measure()
    began = time.monotonic()
    waiting: list[Reading] = []
    for step, (at, batch) in enumerate(readings(args)):
        if design == "before":
            waiting += batch
            keeper.feed(batch)
            if step % COMMIT_EVERY == COMMIT_EVERY - 1:
                outbox.add(waiting, at)
                waiting = []
                ids = [row.id for row in outbox.next_batch(100_000)]
                with store.engine.begin() as connection:  # acknowledged: marked sent, kept
                    for start in range(0, len(ids), 900):
                        chunk = ",".join(str(i) for i in ids[start : start + 900])
                        connection.execute(text(f"UPDATE outbox SET state = 'sent' WHERE id IN ({chunk})"))
        else:
            inflight.add(batch, float(step))
            inflight.finish(inflight.take(5000))  # InfluxDB acknowledged them within the second
            inflight.commit(step - 30.0, at)  # nothing is left to commit
        keeper.tick(at)
        if step % MEASURE_EVERY == MEASURE_EVERY - 1:
            measure()
    keeper.close()
    measure()
    elapsed = time.monotonic() - began
    store.close()
    return written, keeper.checkpoints, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=135)
    parser.add_argument("--hours", type=float, default=16.0)
    parser.add_argument("--period", type=float, default=20.0)
    args = parser.parse_args()
    print(f"{args.nodes} optimizers, one report each every {args.period:.0f} s, {args.hours:g} h of daylight")
    with tempfile.TemporaryDirectory() as directory:
        results = {design: day(args, Path(directory), design) for design in ("before", "after")}
    for design, label in (
        ("before", "before: readings through the outbox, kept as sent"),
        ("after", "after:  readings in memory, energy checkpoints only"),
    ):
        written, checkpoints, elapsed = results[design]
        per = f", {written / max(checkpoints, 1) / 1024:.1f} KB each" if design == "after" else ""
        print(
            f"  {label}: {written / 1e6:7.2f} MB into the WAL "
            f"({checkpoints} energy checkpoints{per}; {elapsed:.0f} s to simulate)"
        )
    print("  SQLite copies WAL pages back into the database file: up to as much again, in both.")


if __name__ == "__main__":
    main()
