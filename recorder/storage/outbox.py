"""The outbox: readings committed to SQLite before they are sent, deleted once acknowledged.

Rows are `ready` (identity known, or given up on) or `held` (waiting for the node's barcode:
the identity hold). The reader thread adds rows and releases held ones when a mapping is
learned; the sender thread takes ready rows in insertion order, writes them, and deletes them
after InfluxDB acknowledged the write. A crash at any point leaves every unacknowledged reading
in the table; re-sending one that InfluxDB already had is harmless (same series and timestamp).

(gateway, node, measurement time) is unique, so a reading seen twice is stored once.

Rows are compact readings (`recorder.reading`) as they are: the same integers in columns, times
in epoch milliseconds, and the long address (as text) once known.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import BigInteger, Engine, Table, bindparam, delete, func, insert, select, type_coerce, update

from recorder.identity import IdentityMap
from recorder.protocol.barcode import format_long_address, parse_long_address
from recorder.reading import Reading
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
_MILLIS_COLUMNS = ("measured_at", "received_at", "enqueued_at")


@dataclass(frozen=True, slots=True)
class PendingReading:
    """A reading waiting in the outbox, with its row ID."""

    id: int
    reading: Reading


class Outbox:
    """The outbox table (see the module docstring). Thread-safe as SQLite is: the reader adds and
    releases, the sender takes, acknowledges and parks."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._table = cast(Table, OutboxEntry.__table__)
        self._parked = cast(Table, ParkedPoint.__table__)
        table = self._table
        # Times go in and out as the integers they are stored as (no datetime on the way).
        self._insert = (
            insert(table)
            .prefix_with("OR IGNORE")
            .values({name: bindparam(name, type_=BigInteger) for name in _MILLIS_COLUMNS})
        )
        self._columns = [
            type_coerce(table.c[name], BigInteger) if name in _MILLIS_COLUMNS else table.c[name]
            for name in _READING_COLUMNS
        ]

    def add(self, readings: Iterable[Reading], enqueued_at: datetime) -> int:
        """Commit readings; unresolved ones are held. Returns how many were new."""
        enqueued_ms = to_millis(enqueued_at)
        rows = []
        for reading in readings:
            row: dict[str, object] = dict(zip(_READING_COLUMNS, reading, strict=True))
            address = reading[-1]
            row["long_address"] = None if address is None else format_long_address(address)
            row["state"] = OUTBOX_READY if address is not None else OUTBOX_HELD
            row["enqueued_at"] = enqueued_ms
            rows.append(row)
        if not rows:
            return 0
        with self.engine.begin() as connection:
            result = connection.execute(self._insert, rows)
            return int(result.rowcount or 0)

    def release(self, identities: IdentityMap, keys: Iterable[tuple[int, int]] | None = None) -> int:
        """Resolve held rows whose node is now known (by each row's measurement time)."""
        table = self._table
        query = select(
            table.c.id, table.c.gateway_id, table.c.node_id, type_coerce(table.c.measured_at, BigInteger)
        ).where(table.c.state == OUTBOX_HELD)
        wanted = set(keys) if keys is not None else None
        released = 0
        with self.engine.begin() as connection:
            updates = []
            for row_id, gateway_id, node_id, measured_at in connection.execute(query):
                if wanted is not None and (gateway_id, node_id) not in wanted:
                    continue
                address = identities.resolve((gateway_id, node_id), measured_at)
                if address is not None:
                    updates.append({"row_id": row_id, "address": format_long_address(address)})
            if updates:
                statement = (
                    update(table)
                    .where(table.c.id == bindparam("row_id"))
                    .values(state=OUTBOX_READY, long_address=bindparam("address"))
                )
                connection.execute(statement, updates)
                released = len(updates)
        return released

    def expire(self, now: datetime, hold: timedelta, policy: str) -> int:
        """Held rows measured longer than `hold` ago: send without a barcode, or drop them."""
        table = self._table
        condition = (table.c.state == OUTBOX_HELD) & (table.c.measured_at < now - hold)
        with self.engine.begin() as connection:
            if policy == "drop":
                result = connection.execute(delete(table).where(condition))
            else:
                result = connection.execute(update(table).where(condition).values(state=OUTBOX_READY))
            return int(result.rowcount or 0)

    def next_batch(self, limit: int) -> list[PendingReading]:
        table = self._table
        query = (
            select(table.c.id, *self._columns)
            .where(table.c.state == OUTBOX_READY)
            .order_by(table.c.id)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [
                PendingReading(row[0], (*row[1:12], parse_long_address(row[12]) if row[12] else None))
                for row in connection.execute(query)
            ]

    def acknowledge(self, ids: list[int]) -> None:
        if not ids:
            return
        table = self._table
        with self.engine.begin() as connection:
            for start in range(0, len(ids), 900):  # SQLite's limit on bound parameters
                connection.execute(delete(table).where(table.c.id.in_(ids[start : start + 900])))

    def park(self, row_id: int, line: str, error: str, at: datetime) -> None:
        """Move a rejected reading aside: keep the line and the error, out of the send queue."""
        with self.engine.begin() as connection:
            connection.execute(insert(self._parked), {"line": line, "error": error, "parked_at": at})
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
