"""The outbox: readings InfluxDB has not acknowledged in time, committed to SQLite until it does.

A reading first waits in memory (`recorder.storage.inflight`); the ones InfluxDB has not
acknowledged within the commit interval, and readings waiting for their barcode, are committed
here, and deleted once InfluxDB acknowledged them. While InfluxDB is down the table grows; when
it is back it drains. Rows are `ready` (identity known, or given up on) or `held` (waiting for
the node's barcode: the identity hold). The reader thread adds rows and releases held ones when
a mapping is learned; the sender thread takes ready rows in insertion order, writes them, and
deletes them after InfluxDB acknowledged the write. A crash at any point leaves every
unacknowledged row in the table; re-sending one that InfluxDB already had is harmless (same
series and timestamp).

`on_ready` (optional) is called, after the commit, with every held row that becomes ready, as
the reading it is sent as (with its identity): released when its barcode is learned
(`release`), or given up on after the hold (`expire`, long address None). Rows dropped after the
hold never become ready. Readings committed here already ready were announced when they arrived
(`InFlight`), so `add` announces nothing. The daily energy accumulator follows these
announcements, so it follows the identity hold exactly as the `tigo_optimizer` points do.

(gateway, node, measurement time) is unique, so a reading seen twice is stored once, and that
key also finds the row of a reading that was sent from memory after it was committed.

Rows are compact readings (`recorder.reading`) as they are: the same integers in columns, times
in epoch milliseconds, and the long address (as text) once known.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Engine, Table, delete, func, insert, select, update

from recorder.identity import IdentityMap
from recorder.protocol.barcode import format_long_address, parse_long_address
from recorder.reading import LONG_ADDRESS, MEASURED_MS, Reading, with_address
from recorder.storage.models import OUTBOX_HELD, OUTBOX_READY, OutboxEntry, ParkedPoint
from recorder.timestamps import to_millis

# The reading's fields, in `Reading` order, and the columns that store them.
_READING_COLUMNS = (
    "gateway_id",
    "node_id",
    "measured_at",
    "received_at",
    "slot_counter",
    "voltage_in_raw",
    "voltage_out_raw",
    "duty_cycle_raw",
    "current_in_raw",
    "temperature_raw",
    "rssi",
    "long_address",
)


@dataclass(frozen=True, slots=True)
class PendingReading:
    """A reading waiting in the outbox, with its row ID."""

    id: int
    reading: Reading


ReadyCallback = Callable[[Sequence[Reading]], None]


class Outbox:
    """The outbox table (see the module docstring). Thread-safe as SQLite is: the reader adds and
    releases, the sender takes, acknowledges and parks."""

    def __init__(self, engine: Engine, on_ready: ReadyCallback | None = None) -> None:
        self.engine = engine
        self.on_ready = on_ready
        self._table = cast(Table, OutboxEntry.__table__)
        self._parked = cast(Table, ParkedPoint.__table__)
        table = self._table
        # Readings go in and out through the driver as the integers they are stored as: the
        # statements are the table's own, without SQLAlchemy's per-row work (a backfill moves
        # hundreds of thousands of waiting readings through a scratch outbox).
        columns = ("state", "enqueued_at", *_READING_COLUMNS)
        places = ", ".join("?" * len(columns))
        self._insert = f"INSERT OR IGNORE INTO {table.name} ({', '.join(columns)}) VALUES ({places})"
        self._select = f"SELECT id, {', '.join(_READING_COLUMNS)} FROM {table.name} WHERE state = ?"

    def add(self, readings: Iterable[Reading], enqueued_at: datetime) -> int:
        """Commit readings; unresolved ones are held. Returns how many were new."""
        enqueued_ms = to_millis(enqueued_at)
        rows = [
            (OUTBOX_HELD, enqueued_ms, *reading[:LONG_ADDRESS], None)
            if reading[LONG_ADDRESS] is None
            else (
                OUTBOX_READY,
                enqueued_ms,
                *reading[:LONG_ADDRESS],
                format_long_address(reading[LONG_ADDRESS]),
            )
            for reading in readings
        ]
        if not rows:
            return 0
        with self.engine.begin() as connection:
            before = connection.exec_driver_sql("SELECT total_changes()").scalar_one()
            connection.exec_driver_sql(self._insert, rows)
            return int(connection.exec_driver_sql("SELECT total_changes()").scalar_one() - before)

    def _readings(self, rows: Iterable[Any]) -> list[PendingReading]:
        return [
            PendingReading(
                row[0], (*row[1 : LONG_ADDRESS + 1], parse_long_address(row[-1]) if row[-1] else None)
            )
            for row in rows
        ]

    def held(self, batch_size: int) -> Iterator[list[PendingReading]]:
        """Every held reading, in insertion order, in batches (without taking them out)."""
        with self.engine.connect() as connection:
            result = connection.exec_driver_sql(self._select + " ORDER BY id", (OUTBOX_HELD,))
            while rows := result.fetchmany(batch_size):
                yield self._readings(rows)

    def release(self, identities: IdentityMap, keys: Iterable[tuple[int, int]] | None = None) -> int:
        """Resolve held rows whose node is now known (by each row's measurement time); only the
        rows of `keys` (gateway, node) when given. Announces them to `on_ready`."""
        name = self._table.name
        query = self._select
        selections: list[tuple[str, tuple[str | int, ...]]] = [(query, (OUTBOX_HELD,))]
        if keys is not None:
            query += " AND gateway_id = ? AND node_id = ?"
            selections = [(query, (OUTBOX_HELD, gateway_id, node_id)) for gateway_id, node_id in keys]
        released: list[Reading] = []
        with self.engine.begin() as connection:
            updates = []
            for statement, parameters in selections:
                for item in self._readings(connection.exec_driver_sql(statement, parameters)):
                    reading = item.reading
                    address = identities.resolve((reading[0], reading[1]), reading[MEASURED_MS])
                    if address is not None:
                        updates.append((OUTBOX_READY, format_long_address(address), item.id))
                        released.append(with_address(reading, address))
            if updates:
                connection.exec_driver_sql(
                    f"UPDATE {name} SET state = ?, long_address = ? WHERE id = ?", updates
                )
        if released and self.on_ready is not None:
            self.on_ready(released)
        return len(released)

    def expire(
        self, now: datetime, hold: timedelta, policy: str, released: set[tuple[int, int]] | None = None
    ) -> int:
        """Held rows measured longer than `hold` ago: send without a barcode, or drop them.

        `released`, when given, receives the (gateway, node) of rows made ready without a
        barcode (none under the drop policy): live views show those nodes from then on.
        """
        table = self._table
        condition = (table.c.state == OUTBOX_HELD) & (table.c.measured_at < now - hold)
        given_up: list[Reading] = []
        with self.engine.begin() as connection:
            if released is not None and policy != "drop":
                nodes = select(table.c.gateway_id, table.c.node_id).where(condition).distinct()
                released.update((gateway_id, node_id) for gateway_id, node_id in connection.execute(nodes))
            if policy == "drop":
                result = connection.execute(delete(table).where(condition))
            else:
                if self.on_ready is not None:
                    cutoff = to_millis(now - hold)
                    rows = connection.exec_driver_sql(
                        self._select + " AND measured_at < ? ORDER BY id", (OUTBOX_HELD, cutoff)
                    )
                    given_up = [item.reading for item in self._readings(rows)]
                result = connection.execute(update(table).where(condition).values(state=OUTBOX_READY))
        if given_up and self.on_ready is not None:
            self.on_ready(given_up)
        return int(result.rowcount or 0)

    def next_batch(self, limit: int) -> list[PendingReading]:
        """The oldest ready readings, up to `limit`."""
        with self.engine.connect() as connection:
            rows = connection.exec_driver_sql(self._select + " ORDER BY id LIMIT ?", (OUTBOX_READY, limit))
            return self._readings(rows)

    def ready_rows(self, chunk: int = 5000) -> Iterator[list[Reading]]:
        """Every ready row's reading, in batches (memory stays flat): readings announced ready
        before a stop that InfluxDB has not acknowledged, for the energy accumulator to re-read."""
        last_id = 0
        while True:
            with self.engine.connect() as connection:
                rows = self._readings(
                    connection.exec_driver_sql(
                        self._select + " AND id > ? ORDER BY id LIMIT ?", (OUTBOX_READY, last_id, chunk)
                    )
                )
            if not rows:
                return
            last_id = rows[-1].id
            yield [item.reading for item in rows]

    def acknowledge(self, ids: list[int]) -> None:
        if not ids:
            return
        table = self._table
        with self.engine.begin() as connection:
            for start in range(0, len(ids), 900):  # SQLite's limit on bound parameters
                connection.execute(delete(table).where(table.c.id.in_(ids[start : start + 900])))

    def acknowledge_readings(self, readings: Iterable[Reading]) -> None:
        """Delete the rows of readings InfluxDB acknowledged (found by their unique key)."""
        keys = [reading[:3] for reading in readings]  # gateway, node, measured ms
        if not keys:
            return
        name = self._table.name
        with self.engine.begin() as connection:
            connection.exec_driver_sql(
                f"DELETE FROM {name} WHERE gateway_id = ? AND node_id = ? AND measured_at = ?", keys
            )

    def park(self, row_id: int | None, line: str, error: str, at: datetime) -> None:
        """Move a rejected reading aside: keep the line and the error, out of the send queue.

        `row_id` is None for a reading sent from memory, which has no row.
        """
        with self.engine.begin() as connection:
            connection.execute(insert(self._parked), {"line": line, "error": error, "parked_at": at})
            if row_id is not None:
                connection.execute(delete(self._table).where(self._table.c.id == row_id))

    def depth(self) -> dict[str, int]:
        table = self._table
        with self.engine.connect() as connection:
            grouped = select(table.c.state, func.count()).group_by(table.c.state)
            counts: dict[str, int] = {state: count for state, count in connection.execute(grouped)}
            parked = connection.execute(select(func.count()).select_from(self._parked)).scalar_one()
        return {
            "ready": int(counts.get(OUTBOX_READY, 0)),
            "held": int(counts.get(OUTBOX_HELD, 0)),
            "parked": int(parked),
        }

    def held_nodes(self) -> int:
        table = self._table
        with self.engine.connect() as connection:
            query = select(func.count()).select_from(
                select(table.c.gateway_id, table.c.node_id)
                .where(table.c.state == OUTBOX_HELD)
                .distinct()
                .subquery()
            )
            return int(connection.execute(query).scalar_one())
