"""Bytes a day the daily-energy checkpoints write to the state database (SD-card wear).

    python benchmarks/energy_disk.py [--nodes 135] [--hours 16] [--period 20]

Feeds a synthetic sunny day (every optimizer reporting every `--period` seconds for `--hours`
daylight hours) through the real outbox and energy keeper on a SQLite file, committing once a
second as `recorder run` does, and acknowledging every row as a sender would. Before each energy
checkpoint the WAL is emptied, so the WAL's size after it is exactly what that checkpoint's
transaction wrote. Printed: checkpoints, bytes per checkpoint, and bytes per day for the energy
rows alone and for the whole checkpoint (with the deletion of the outbox rows it covers, which
the sender used to do itself, one acknowledgement at a time). SQLite later copies WAL pages back
into the database file: up to as many bytes again.
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
from recorder.observer import Reading
from recorder.protocol.events import PowerReport
from recorder.storage.outbox import Outbox
from recorder.storage.state import StateStore


class Discard:
    def submit_energy(self, days: Iterable[DayTotals]) -> None:
        pass

    def unsent_energy_days(self) -> set[date]:
        return set()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=135)
    parser.add_argument("--hours", type=float, default=16.0)
    parser.add_argument("--period", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        db = Path(directory) / "state.db"
        wal = Path(f"{db}-wal")
        store = StateStore.open(db)
        keeper = EnergyKeeper(store.engine, "UTC", timedelta(minutes=10))
        outbox = Outbox(store.engine, on_ready=keeper.feed)
        keeper.start(outbox, Discard())
        measured = {"energy": 0, "outbox deletion": 0}
        checkpoints = 0
        original = keeper.store.checkpoint

        def empty_wal() -> None:
            with store.engine.connect() as connection:
                connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))

        def checkpoint(changes, settings, box, through):  # type: ignore[no-untyped-def]
            nonlocal checkpoints
            checkpoints += 1
            empty_wal()
            original(changes, settings, None, through)  # the energy rows and state only
            measured["energy"] += wal.stat().st_size if wal.exists() else 0
            empty_wal()
            with store.engine.begin() as connection:
                forgotten = box.forget_sent(connection, through) if box is not None else 0
            measured["outbox deletion"] += wal.stat().st_size if wal.exists() else 0
            return forgotten

        keeper.store.checkpoint = checkpoint  # type: ignore[method-assign]
        start = datetime(2025, 6, 21, 4, tzinfo=UTC)
        seconds = int(args.hours * 3600)
        phase = {node: (node * args.period / args.nodes) for node in range(args.nodes)}
        began = time.monotonic()
        pending: list[Reading] = []
        for second in range(seconds):
            at = start + timedelta(seconds=second)
            for node in range(args.nodes):
                if (second - phase[node]) % args.period < 1:
                    measured_at = at + timedelta(milliseconds=int((phase[node] % 1) * 1000))
                    level = max(0.05, 1 - abs(second - seconds / 2) / (seconds / 2))
                    report = PowerReport(720, 700, 255, int(1900 * level), 400, b"\x00\x00\x00", 0, 150)
                    address = bytes((4, 0xC0, 0x5B, 0x40, 0, 0, node // 256, node % 256))
                    pending.append(Reading(4609, node + 2, measured_at, at, report, address, None))
            outbox.add(pending, at)
            pending = []
            keeper.tick(at)
            outbox.acknowledge([row.id for row in outbox.next_batch(5000)])
        keeper.close()
        elapsed = time.monotonic() - began
        energy_bytes = measured["energy"]
        whole = energy_bytes + measured["outbox deletion"]
        print(
            f"{args.nodes} optimizers, one report each every {args.period:.0f} s, "
            f"{args.hours:g} h of daylight"
        )
        print(f"  energy checkpoints:  {checkpoints} ({elapsed:.0f} s to simulate); over the period:")
        print(
            f"  energy rows and state:         {energy_bytes / 1e6:.2f} MB "
            f"({energy_bytes / max(checkpoints, 1) / 1024:.1f} KB per checkpoint) into the WAL"
        )
        print(
            f"  with the outbox rows deleted:  {whole / 1e6:.2f} MB "
            "(the deletions replace the sender's own, one per acknowledgement)"
        )
        print("  SQLite copies WAL pages back into the database file: up to as much again.")
        store.close()


if __name__ == "__main__":
    main()
