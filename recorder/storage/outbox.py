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

`on_ready` (optional) is called, after the commit, with every held row that becomes ready, with
the identity it is sent with: released when its barcode is learned (`release`), or given up on
after the hold (`expire`, `long_address` None). Rows dropped after the hold never become ready.
Readings committed here already ready were announced when they arrived (`InFlight`), so `add`
announces nothing. The daily energy accumulator follows these announcements, so it follows the
identity hold exactly as the `tigo_optimizer` points do.

(gateway, node, measurement time) is unique, so a reading seen twice is stored once, and that
key also finds the row of a reading that was sent from memory after it was committed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Engine, Table, bindparam, delete, func, insert, select, update

from recorder.identity import IdentityMap
from recorder.observer import Reading
from recorder.protocol.barcode import format_long_address, parse_long_address
from recorder.protocol.events import PowerReport
from recorder.storage.models import OUTBOX_HELD, OUTBOX_READY, OutboxEntry, ParkedPoint

_UNKNOWN = b"\x00\x00\x00"


@dataclass(frozen=True, slots=True)
class PendingReading:
    id: int
    gateway_id: int
    node_id: int
    measured_at: datetime
    report: PowerReport
    long_address: bytes | None


ReadyCallback = Callable[[Sequence[Reading | PendingReading]], None]


class Outbox:
    """Readings InfluxDB has not acknowledged in time, in SQLite (see the module docstring)."""

    def __init__(self, engine: Engine, on_ready: ReadyCallback | None = None) -> None:
        self.engine = engine
        self.on_ready = on_ready
        self._table = cast(Table, OutboxEntry.__table__)
        self._parked = cast(Table, ParkedPoint.__table__)

    def add(self, readings: Iterable[Reading], enqueued_at: datetime) -> int:
        """Commit readings; unresolved ones are held. Returns how many were new."""
        rows = [
            {
                "state": OUTBOX_READY if reading.long_address is not None else OUTBOX_HELD,
                "gateway_id": reading.gateway_id,
                "node_id": reading.node_id,
                "measured_at": reading.measured_at,
                "received_at": reading.received_at,
                "enqueued_at": enqueued_at,
                "slot_counter": reading.report.slot_counter,
                "voltage_in_raw": reading.report.voltage_in_raw,
                "voltage_out_raw": reading.report.voltage_out_raw,
                "duty_cycle_raw": reading.report.duty_cycle_raw,
                "current_in_raw": reading.report.current_in_raw,
                "temperature_raw": reading.report.temperature_raw,
                "rssi": reading.report.rssi,
                "long_address": format_long_address(reading.long_address) if reading.long_address else None,
            }
            for reading in readings
        ]
        if not rows:
            return 0
        with self.engine.begin() as connection:
            result = connection.execute(insert(self._table).prefix_with("OR IGNORE"), rows)
            return int(result.rowcount or 0)

    def release(self, identities: IdentityMap, keys: Iterable[tuple[int, int]] | None = None) -> int:
        """Resolve held rows whose node is now known (by each row's measurement time)."""
        table = self._table
        query = select(table).where(table.c.state == OUTBOX_HELD)
        wanted = set(keys) if keys is not None else None
        released: list[PendingReading] = []
        with self.engine.begin() as connection:
            updates = []
            for row in connection.execute(query):
                if wanted is not None and (row.gateway_id, row.node_id) not in wanted:
                    continue
                address = identities.resolve((row.gateway_id, row.node_id), row.measured_at)
                if address is not None:
                    updates.append({"row_id": row.id, "address": format_long_address(address)})
                    released.append(replace(_pending(row), long_address=address))
            if updates:
                statement = (
                    update(table)
                    .where(table.c.id == bindparam("row_id"))
                    .values(state=OUTBOX_READY, long_address=bindparam("address"))
                )
                connection.execute(statement, updates)
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
        given_up: list[PendingReading] = []
        with self.engine.begin() as connection:
            if released is not None and policy != "drop":
                nodes = select(table.c.gateway_id, table.c.node_id).where(condition).distinct()
                released.update((gateway_id, node_id) for gateway_id, node_id in connection.execute(nodes))
            if policy == "drop":
                result = connection.execute(delete(table).where(condition))
            else:
                if self.on_ready is not None:
                    given_up = [_pending(row) for row in connection.execute(select(table).where(condition))]
                result = connection.execute(update(table).where(condition).values(state=OUTBOX_READY))
        if given_up and self.on_ready is not None:
            self.on_ready(given_up)
        return int(result.rowcount or 0)

    def next_batch(self, limit: int) -> list[PendingReading]:
        table = self._table
        query = select(table).where(table.c.state == OUTBOX_READY).order_by(table.c.id).limit(limit)
        with self.engine.connect() as connection:
            return [_pending(row) for row in connection.execute(query)]

    def ready_rows(self, chunk: int = 5000) -> Iterator[list[PendingReading]]:
        """Every ready row, in batches (memory stays flat): readings announced ready before a
        stop that InfluxDB has not acknowledged, for the energy accumulator to re-read."""
        table = self._table
        last_id = 0
        while True:
            query = (
                select(table)
                .where(table.c.state == OUTBOX_READY, table.c.id > last_id)
                .order_by(table.c.id)
                .limit(chunk)
            )
            with self.engine.connect() as connection:
                rows = [_pending(row) for row in connection.execute(query)]
            if not rows:
                return
            last_id = rows[-1].id
            yield rows

    def acknowledge(self, ids: list[int]) -> None:
        if not ids:
            return
        table = self._table
        with self.engine.begin() as connection:
            for start in range(0, len(ids), 900):  # SQLite's limit on bound parameters
                connection.execute(delete(table).where(table.c.id.in_(ids[start : start + 900])))

    def acknowledge_readings(self, readings: Iterable[Reading]) -> None:
        """Delete the rows of readings InfluxDB acknowledged (found by their unique key)."""
        keys = [
            {"gateway": reading.gateway_id, "node": reading.node_id, "measured": reading.measured_at}
            for reading in readings
        ]
        if not keys:
            return
        table = self._table
        statement = delete(table).where(
            (table.c.gateway_id == bindparam("gateway"))
            & (table.c.node_id == bindparam("node"))
            & (table.c.measured_at == bindparam("measured"))
        )
        with self.engine.begin() as connection:
            connection.execute(statement, keys)

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


def _pending(row: Any) -> PendingReading:
    """An outbox row as a reading."""
    return PendingReading(
        id=row.id,
        gateway_id=row.gateway_id,
        node_id=row.node_id,
        measured_at=row.measured_at,
        report=PowerReport(
            voltage_in_raw=row.voltage_in_raw,
            voltage_out_raw=row.voltage_out_raw,
            duty_cycle_raw=row.duty_cycle_raw,
            current_in_raw=row.current_in_raw,
            temperature_raw=row.temperature_raw,
            unknown=_UNKNOWN,
            slot_counter=row.slot_counter,
            rssi=row.rssi,
        ),
        long_address=parse_long_address(row.long_address) if row.long_address else None,
    )
