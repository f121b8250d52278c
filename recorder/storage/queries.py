"""Questions asked of the state database, in plain SQL on a `sqlite3` connection.

The read-only commands (`status`, `nodes list|history|export`) run these on a connection from
`recorder.storage.readonly`, without importing SQLAlchemy; `StateStore` runs the same functions
on its engine's connection, so there is one copy of each question. Times are stored as integer
milliseconds since the epoch (see `recorder.storage.models.UtcMillis`).

Gateways are named one way everywhere (`gateway_name`): the TAP's barcode once it is known,
else its gateway ID; `resolve_gateway` accepts either wherever a command takes `--gateway`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from recorder.errors import NotFoundError, UsageError
from recorder.identity import IdentityMap, Interval
from recorder.protocol.barcode import address_from_barcode, format_long_address, parse_long_address
from recorder.timestamps import from_millis

OUTBOX_HELD = "held"  # recorder.storage.models.OUTBOX_HELD (a test keeps them equal)


@dataclass(frozen=True)
class NodeRow:
    """One line of `recorder nodes list` / `history`."""

    gateway_id: int
    node_id: int
    long_address: str | None
    barcode: str | None
    name: str | None
    string: str | None
    source: str | None
    valid_from: datetime | None
    valid_to: datetime | None
    first_seen: datetime | None
    last_seen: datetime | None
    is_alias: bool = False
    last_report_at: datetime | None = None
    report_count: int = 0
    waiting: int = 0  # readings held in the outbox for this node's identity
    gateway_barcode: str | None = None

    @property
    def gateway(self) -> str:
        return gateway_name(self.gateway_id, self.gateway_barcode)

    def as_json(self) -> dict[str, Any]:
        def iso(at: datetime | None) -> str | None:
            return at.isoformat(timespec="seconds") if at else None

        return {
            "gateway_id": self.gateway_id,
            "gateway": self.gateway,
            "node_id": self.node_id,
            "long_address": self.long_address,
            "barcode": self.barcode,
            "name": self.name,
            "string": self.string,
            "source": self.source,
            "valid_from": iso(self.valid_from),
            "valid_to": iso(self.valid_to),
            "first_seen": iso(self.first_seen),
            "last_seen": iso(self.last_seen),
            "is_alias": self.is_alias,
            "last_report_at": iso(self.last_report_at),
            "report_count": self.report_count,
            "waiting": self.waiting,
        }


def gateway_name(gateway_id: int, barcode: str | None) -> str:
    """How a gateway is shown everywhere: its barcode when known, else its ID."""
    return barcode or str(gateway_id)


def _time(value: int | None) -> datetime | None:
    return None if value is None else from_millis(value)


@contextmanager
def snapshot(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Several SELECTs that see one consistent state (one read transaction)."""
    if connection.in_transaction:
        yield connection
        return
    connection.execute("BEGIN")
    try:
        yield connection
    finally:
        connection.execute("COMMIT")


def identity_map(connection: sqlite3.Connection) -> IdentityMap:
    """Every mapping interval, for the observer's memory (`recorder.identity`)."""
    identities = IdentityMap()
    for gateway_id, node_id, valid_from, source, long_address in connection.execute(
        "SELECT m.gateway_id, m.node_id, m.valid_from, m.source, o.long_address "
        "FROM node_mappings m JOIN optimizers o ON o.id = m.optimizer_id ORDER BY m.valid_from"
    ):
        identities.seed(
            (gateway_id, node_id),
            Interval(valid_from, parse_long_address(long_address), source),  # both in ms
        )
    return identities


def gateway_addresses(connection: sqlite3.Connection) -> dict[int, bytes]:
    """Gateway ID -> long address, for the gateways whose identity has been heard."""
    return {
        gateway_id: parse_long_address(address)
        for gateway_id, address in connection.execute(
            "SELECT gateway_id, long_address FROM gateways WHERE long_address IS NOT NULL"
        )
        if address
    }


def gateways(connection: sqlite3.Connection) -> dict[int, str | None]:
    """Gateway ID -> barcode (None until the gateway's identity has been heard)."""
    return {
        gateway_id: barcode
        for gateway_id, barcode in connection.execute("SELECT gateway_id, barcode FROM gateways")
    }


def resolve_gateway(connection: sqlite3.Connection, text: str) -> int:
    """A `--gateway` value, barcode or ID, as the gateway ID."""
    text = text.strip()
    known = gateways(connection)
    if text.isdigit():
        return int(text)
    for gateway_id, barcode in known.items():
        if barcode and barcode.upper() == text.upper():
            return gateway_id
    names = ", ".join(gateway_name(g, b) for g, b in sorted(known.items())) or "none yet"
    try:
        address_from_barcode(text)
    except ValueError:
        raise UsageError(
            f"--gateway: {text!r} is neither a gateway ID (e.g. 4609) nor a barcode (e.g. 3-2BE16Y)"
        ) from None
    raise NotFoundError(f"--gateway: no gateway with barcode {text.upper()} is known (known: {names})")


_MAPPING_COLUMNS = (
    "m.gateway_id, m.node_id, o.long_address, o.barcode, o.name, o.string, m.source, m.valid_from, "
    "m.valid_to, m.first_seen, m.last_seen, m.is_alias, g.barcode"
)
_MAPPING_JOIN = (
    "FROM node_mappings m JOIN optimizers o ON o.id = m.optimizer_id "
    "LEFT JOIN gateways g ON g.gateway_id = m.gateway_id"
)


def _mapping_row(row: tuple[Any, ...], **extra: Any) -> NodeRow:
    fields: dict[str, Any] = {
        "gateway_id": row[0],
        "node_id": row[1],
        "long_address": row[2],
        "barcode": row[3],
        "name": row[4],
        "string": row[5],
        "source": row[6],
        "valid_from": _time(row[7]),
        "valid_to": _time(row[8]),
        "first_seen": _time(row[9]),
        "last_seen": _time(row[10]),
        "is_alias": bool(row[11]),
        "gateway_barcode": row[12],
    }
    return NodeRow(**{**fields, **extra})


def list_nodes(
    connection: sqlite3.Connection, *, gateway_id: int | None = None, unresolved: bool = False
) -> list[NodeRow]:
    """Every node: its current mapping (if any), activity and readings waiting for a barcode."""
    with snapshot(connection):
        activity = {
            (gateway, node): (first, last, count)
            for gateway, node, first, last, count in connection.execute(
                "SELECT gateway_id, node_id, first_report_at, last_report_at, report_count FROM node_activity"
            )
        }
        waiting = {
            (gateway, node): count
            for gateway, node, count in connection.execute(
                "SELECT gateway_id, node_id, count(*) FROM outbox WHERE state = ? "
                "GROUP BY gateway_id, node_id",
                (OUTBOX_HELD,),
            )
        }
        gateway_barcodes = gateways(connection)
        current = connection.execute(
            f"SELECT {_MAPPING_COLUMNS} {_MAPPING_JOIN} WHERE m.valid_to IS NULL "
            "ORDER BY m.gateway_id, m.node_id"
        ).fetchall()
    rows: list[NodeRow] = []
    mapped: set[tuple[int, int]] = set()
    for row in current:
        key = (row[0], row[1])
        mapped.add(key)
        seen = activity.get(key)
        extra: dict[str, Any] = {"waiting": waiting.get(key, 0)}
        if seen is not None:
            extra.update(
                last_seen=from_millis(max(row[10], seen[1])),
                last_report_at=from_millis(seen[1]),
                report_count=seen[2],
            )
        rows.append(_mapping_row(row, **extra))
    for key in sorted(set(activity) | set(waiting)):
        if key in mapped:
            continue
        seen = activity.get(key)
        rows.append(
            NodeRow(
                gateway_id=key[0],
                node_id=key[1],
                long_address=None,
                barcode=None,
                name=None,
                string=None,
                source=None,
                valid_from=None,
                valid_to=None,
                first_seen=_time(seen[0]) if seen else None,
                last_seen=_time(seen[1]) if seen else None,
                last_report_at=_time(seen[1]) if seen else None,
                report_count=seen[2] if seen else 0,
                waiting=waiting.get(key, 0),
                gateway_barcode=gateway_barcodes.get(key[0]),
            )
        )
    if gateway_id is not None:
        rows = [row for row in rows if row.gateway_id == gateway_id]
    if unresolved:
        rows = [row for row in rows if row.long_address is None]
    return sorted(rows, key=lambda row: (row.gateway_id, row.node_id))


def history(connection: sqlite3.Connection, query: str, *, gateway_id: int | None = None) -> list[NodeRow]:
    """Every interval for a barcode (across node IDs) or for a node ID (across gateways)."""
    conditions: list[str] = []
    parameters: list[Any] = []
    if query.strip().isdigit():
        conditions.append("m.node_id = ?")
        parameters.append(int(query))
    else:
        try:
            address = format_long_address(address_from_barcode(query))
        except ValueError as error:
            raise UsageError(f"{error}; or give a numeric node ID") from None
        conditions.append("o.long_address = ?")
        parameters.append(address)
    if gateway_id is not None:
        conditions.append("m.gateway_id = ?")
        parameters.append(gateway_id)
    rows = [
        _mapping_row(row)
        for row in connection.execute(
            f"SELECT {_MAPPING_COLUMNS} {_MAPPING_JOIN} WHERE {' AND '.join(conditions)} "
            "ORDER BY m.valid_from, m.node_id",
            parameters,
        )
    ]
    if not rows:
        raise NotFoundError(f"no mapping history for {query!r} in the state database")
    return rows


def export(connection: sqlite3.Connection) -> dict[str, Any]:
    """Everything known about identity, in the layout `nodes import` reads back."""

    def iso(value: int | None) -> str | None:
        at = _time(value)
        return at.isoformat() if at else None

    with snapshot(connection):
        gateway_rows = connection.execute(
            "SELECT gateway_id, long_address, barcode, version FROM gateways ORDER BY gateway_id"
        ).fetchall()
        optimizer_rows = connection.execute(
            "SELECT long_address, barcode, name, string, note FROM optimizers ORDER BY long_address"
        ).fetchall()
        mapping_rows = connection.execute(
            "SELECT m.gateway_id, m.node_id, o.long_address, o.barcode, m.valid_from, m.valid_to, m.source "
            "FROM node_mappings m JOIN optimizers o ON o.id = m.optimizer_id "
            "ORDER BY m.gateway_id, m.node_id, m.valid_from"
        ).fetchall()
    return {
        "format": "recorder-nodes",
        "version": 1,
        "gateways": [
            {"gateway_id": g, "long_address": address, "barcode": barcode, "version": version}
            for g, address, barcode, version in gateway_rows
        ],
        "optimizers": [
            {"long_address": address, "barcode": barcode, "name": name, "string": string, "note": note}
            for address, barcode, name, string, note in optimizer_rows
        ],
        "mappings": [
            {
                "gateway_id": g,
                "node_id": node,
                "long_address": address,
                "barcode": barcode,
                "valid_from": iso(valid_from),
                "valid_to": iso(valid_to),
                "source": source,
            }
            for g, node, address, barcode, valid_from, valid_to, source in mapping_rows
        ],
    }


def get_state(connection: sqlite3.Connection, key: str) -> tuple[dict[str, Any], datetime] | None:
    """A small JSON value the recorder saved (`health`, `backfill`), and when."""
    row = connection.execute("SELECT value, updated_at FROM recorder_state WHERE key = ?", (key,)).fetchone()
    if row is None:
        return None
    loaded: dict[str, Any] = json.loads(row[0])
    return loaded, from_millis(row[1])
