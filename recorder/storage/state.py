"""The state store: identity history, labels, node activity and health, over the state database.

The observer keeps identity in memory and never touches the database; this store loads that
memory at start (`identity_map`) and persists every change the observer reports
(`record_outputs`). Mapping intervals here follow the same rules as `recorder.identity`: a
change at time T closes the interval valid at T and opens one from T; resolving a time before
the first interval uses the first interval.

Every method is one short transaction, so a second process (e.g. `recorder nodes list` while
`recorder run` records) only ever waits for a few milliseconds (WAL + busy timeout).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from recorder.errors import NotFoundError, UsageError
from recorder.identity import IdentityMap, Interval
from recorder.observer import ALIAS_BIT, GatewayLearned, MappingLearned, Output, Reading
from recorder.protocol.barcode import (
    address_from_barcode,
    barcode_from_address,
    format_long_address,
    parse_long_address,
)
from recorder.storage.db import Synchronous, open_database
from recorder.storage.models import (
    OUTBOX_HELD,
    Gateway,
    NodeActivity,
    NodeMapping,
    Optimizer,
    OutboxEntry,
    RecorderState,
)
from recorder.timestamps import to_millis


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

    def as_json(self) -> dict[str, Any]:
        def iso(at: datetime | None) -> str | None:
            return at.isoformat(timespec="seconds") if at else None

        return {
            "gateway_id": self.gateway_id,
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


class ActivityTally:
    """Power reports per (gateway, node) not saved yet: [count, first, last measurement time]."""

    __slots__ = ("nodes",)

    def __init__(self) -> None:
        self.nodes: dict[tuple[int, int], list[Any]] = {}

    def add(self, reading: Reading) -> None:
        entry = self.nodes.get((reading.gateway_id, reading.node_id))
        if entry is None:
            self.nodes[(reading.gateway_id, reading.node_id)] = [1, reading.measured_at, reading.measured_at]
        else:
            entry[0] += 1
            entry[1] = min(entry[1], reading.measured_at)
            entry[2] = max(entry[2], reading.measured_at)

    def __bool__(self) -> bool:
        return bool(self.nodes)


@dataclass(frozen=True)
class Labels:
    name: str | None
    string: str | None


@dataclass(frozen=True)
class ImportedMapping:
    gateway_id: int
    node_id: int
    long_address: bytes
    valid_from: datetime
    valid_to: datetime | None = None
    source: str = "import"


@dataclass(frozen=True)
class ImportedGateway:
    gateway_id: int
    long_address: bytes | None
    version: str | None


@dataclass(frozen=True)
class ImportedLabels:
    long_address: bytes
    name: str | None
    string: str | None
    note: str | None


def _mapping_row(mapping: NodeMapping, optimizer: Optimizer, **extra: Any) -> NodeRow:
    """A mapping interval as a row; `extra` overrides or adds the activity columns."""
    fields: dict[str, Any] = {
        "gateway_id": mapping.gateway_id,
        "node_id": mapping.node_id,
        "long_address": optimizer.long_address,
        "barcode": optimizer.barcode,
        "name": optimizer.name,
        "string": optimizer.string,
        "source": mapping.source,
        "valid_from": mapping.valid_from,
        "valid_to": mapping.valid_to,
        "first_seen": mapping.first_seen,
        "last_seen": mapping.last_seen,
        "is_alias": mapping.is_alias,
    }
    return NodeRow(**{**fields, **extra})


class StateStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        create_directory: bool = False,
        migrate: bool = True,
        synchronous: Synchronous = "NORMAL",
    ) -> StateStore:
        return cls(
            open_database(path, migrate=migrate, create_directory=create_directory, synchronous=synchronous)
        )

    def close(self) -> None:
        self.engine.dispose()

    def session(self) -> Session:
        return self._sessions()

    # ----------------------------------------------------------------------------------------
    # Loading into memory

    def identity_map(self) -> IdentityMap:
        identities = IdentityMap()
        with self.session() as session:
            rows = session.execute(
                select(
                    NodeMapping.gateway_id,
                    NodeMapping.node_id,
                    NodeMapping.valid_from,
                    NodeMapping.source,
                    Optimizer.long_address,
                )
                .join(Optimizer)
                .order_by(NodeMapping.valid_from)
            )
            for gateway_id, node_id, valid_from, source, long_address in rows:
                identities.seed(
                    (gateway_id, node_id), Interval(valid_from, parse_long_address(long_address), source)
                )
        return identities

    def mapping_version(self) -> tuple[int, int, int]:
        """Changes whenever a mapping interval is added (by any process)."""
        with self.session() as session:
            count, newest, latest = session.execute(
                select(func.count(), func.max(NodeMapping.id), func.max(NodeMapping.valid_from))
            ).one()
        return int(count), int(newest or 0), to_millis(latest) if latest else 0

    def gateway_addresses(self) -> dict[int, bytes]:
        with self.session() as session:
            rows = session.execute(
                select(Gateway.gateway_id, Gateway.long_address).where(Gateway.long_address.is_not(None))
            )
            return {gateway_id: parse_long_address(address) for gateway_id, address in rows if address}

    def gateway_labels(self) -> dict[int, str]:
        """Gateway ID -> barcode, for the `gateway` tag."""
        with self.session() as session:
            rows = session.execute(
                select(Gateway.gateway_id, Gateway.barcode).where(Gateway.barcode.is_not(None))
            )
            return {gateway_id: barcode for gateway_id, barcode in rows if barcode}

    def labels(self) -> dict[bytes, Labels]:
        with self.session() as session:
            rows = session.execute(
                select(Optimizer.long_address, Optimizer.name, Optimizer.string).where(
                    (Optimizer.name.is_not(None)) | (Optimizer.string.is_not(None))
                )
            )
            return {parse_long_address(address): Labels(name, string) for address, name, string in rows}

    # ----------------------------------------------------------------------------------------
    # Writing what the observer learned

    def record_outputs(self, outputs: Iterable[Output]) -> None:
        """Persist identity changes and node activity from one batch of observer outputs."""
        mappings: list[MappingLearned] = []
        gateways: list[GatewayLearned] = []
        activity = ActivityTally()
        for output in outputs:
            if isinstance(output, Reading):
                activity.add(output)
            elif isinstance(output, MappingLearned):
                mappings.append(output)
            elif isinstance(output, GatewayLearned):
                gateways.append(output)
        if not (mappings or gateways or activity):
            return
        with self.session() as session, session.begin():
            for learned in gateways:
                self._gateway(
                    session, learned.gateway_id, learned.long_address, learned.version, learned.observed_at
                )
            for mapping in mappings:
                self._mapping(
                    session,
                    mapping.gateway_id,
                    mapping.node_id,
                    mapping.long_address,
                    mapping.source,
                    mapping.observed_at,
                )
            self._save_activity(session, activity)

    def _save_activity(self, session: Session, activity: ActivityTally) -> None:
        for (gateway_id, node_id), (count, first, last) in activity.nodes.items():
            self._activity(session, gateway_id, node_id, count, first, last)

    def _gateway(
        self, session: Session, gateway_id: int, long_address: bytes | None, version: str | None, at: datetime
    ) -> None:
        row = session.get(Gateway, gateway_id)
        if row is None:
            row = Gateway(gateway_id=gateway_id, first_seen=at, last_seen=at)
            session.add(row)
        if long_address is not None:
            row.long_address = format_long_address(long_address)
            row.barcode = barcode_from_address(long_address)
        if version is not None:
            row.version = version
        row.last_seen = max(row.last_seen, at)

    def _optimizer(self, session: Session, long_address: bytes, at: datetime) -> Optimizer:
        text = format_long_address(long_address)
        optimizer = session.scalars(select(Optimizer).where(Optimizer.long_address == text)).one_or_none()
        if optimizer is None:
            optimizer = Optimizer(
                long_address=text, barcode=barcode_from_address(long_address), first_seen=at, last_seen=at
            )
            session.add(optimizer)
            session.flush()
        else:
            optimizer.first_seen = min(optimizer.first_seen, at)
            optimizer.last_seen = max(optimizer.last_seen, at)
        return optimizer

    def _mapping(
        self,
        session: Session,
        gateway_id: int,
        node_id: int,
        long_address: bytes,
        source: str,
        at: datetime,
        valid_to: datetime | None = None,
    ) -> None:
        """Insert an interval starting at `at` and re-link the neighbours' end times."""
        optimizer = self._optimizer(session, long_address, at)
        intervals = list(
            session.scalars(
                select(NodeMapping)
                .where(NodeMapping.gateway_id == gateway_id, NodeMapping.node_id == node_id)
                .order_by(NodeMapping.valid_from)
            )
        )
        # The interval valid at `at`; none when the evidence predates everything we knew (it then
        # becomes the first interval).
        current = None
        for interval in intervals:
            if interval.valid_from <= at:
                current = interval
        if current is not None and current.optimizer_id == optimizer.id:
            current.last_seen = max(current.last_seen, at)
            return
        existing = next((interval for interval in intervals if interval.valid_from == at), None)
        if existing is not None:
            existing.optimizer_id = optimizer.id
            existing.source = source
            existing.last_seen = at
        else:
            session.add(
                NodeMapping(
                    gateway_id=gateway_id,
                    node_id=node_id,
                    optimizer_id=optimizer.id,
                    valid_from=at,
                    valid_to=valid_to,
                    source=source,
                    is_alias=bool(node_id & ALIAS_BIT),
                    first_seen=at,
                    last_seen=at,
                )
            )
        session.flush()
        ordered = list(
            session.scalars(
                select(NodeMapping)
                .where(NodeMapping.gateway_id == gateway_id, NodeMapping.node_id == node_id)
                .order_by(NodeMapping.valid_from)
            )
        )
        for earlier, later in pairwise(ordered):
            earlier.valid_to = later.valid_from
        if valid_to is None:
            ordered[-1].valid_to = None

    def _activity(
        self, session: Session, gateway_id: int, node_id: int, count: int, first: datetime, last: datetime
    ) -> None:
        row = session.get(NodeActivity, (gateway_id, node_id))
        if row is None:
            session.add(
                NodeActivity(
                    gateway_id=gateway_id,
                    node_id=node_id,
                    first_report_at=first,
                    last_report_at=last,
                    report_count=count,
                )
            )
            return
        row.first_report_at = min(row.first_report_at, first)
        row.last_report_at = max(row.last_report_at, last)
        row.report_count += count

    # ----------------------------------------------------------------------------------------
    # Questions

    def resolve(self, gateway_id: int, node_id: int, at: datetime) -> bytes | None:
        """The long address behind a node ID at `at` (the first interval covers earlier times)."""
        with self.session() as session:
            intervals = list(
                session.execute(
                    select(NodeMapping.valid_from, Optimizer.long_address)
                    .join(Optimizer)
                    .where(NodeMapping.gateway_id == gateway_id, NodeMapping.node_id == node_id)
                    .order_by(NodeMapping.valid_from)
                )
            )
        if not intervals:
            return None
        chosen = intervals[0][1]
        for valid_from, long_address in intervals:
            if valid_from <= at:
                chosen = long_address
        return parse_long_address(chosen)

    def list_nodes(self, *, gateway_id: int | None = None, unresolved: bool = False) -> list[NodeRow]:
        with self.session() as session:
            activity = {(row.gateway_id, row.node_id): row for row in session.scalars(select(NodeActivity))}
            waiting = dict(
                ((gateway, node), count)
                for gateway, node, count in session.execute(
                    select(OutboxEntry.gateway_id, OutboxEntry.node_id, func.count())
                    .where(OutboxEntry.state == OUTBOX_HELD)
                    .group_by(OutboxEntry.gateway_id, OutboxEntry.node_id)
                )
            )
            gateway_barcodes = {row.gateway_id: row.barcode for row in session.scalars(select(Gateway))}
            rows: list[NodeRow] = []
            mapped: set[tuple[int, int]] = set()
            current = session.execute(
                select(NodeMapping, Optimizer)
                .join(Optimizer)
                .where(NodeMapping.valid_to.is_(None))
                .order_by(NodeMapping.gateway_id, NodeMapping.node_id)
            )
            for mapping, optimizer in current:
                key = (mapping.gateway_id, mapping.node_id)
                mapped.add(key)
                seen = activity.get(key)
                rows.append(
                    _mapping_row(
                        mapping,
                        optimizer,
                        last_seen=max(mapping.last_seen, seen.last_report_at) if seen else mapping.last_seen,
                        last_report_at=seen.last_report_at if seen else None,
                        report_count=seen.report_count if seen else 0,
                        waiting=waiting.get(key, 0),
                        gateway_barcode=gateway_barcodes.get(mapping.gateway_id),
                    )
                )
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
                        first_seen=seen.first_report_at if seen else None,
                        last_seen=seen.last_report_at if seen else None,
                        last_report_at=seen.last_report_at if seen else None,
                        report_count=seen.report_count if seen else 0,
                        waiting=waiting.get(key, 0),
                        gateway_barcode=gateway_barcodes.get(key[0]),
                    )
                )
        if gateway_id is not None:
            rows = [row for row in rows if row.gateway_id == gateway_id]
        if unresolved:
            rows = [row for row in rows if row.long_address is None]
        return sorted(rows, key=lambda row: (row.gateway_id, row.node_id))

    def history(self, query: str, *, gateway_id: int | None = None) -> list[NodeRow]:
        """Every interval for a barcode (across node IDs) or for a node ID (across gateways)."""
        with self.session() as session:
            statement = select(NodeMapping, Optimizer).join(Optimizer)
            if query.strip().isdigit():
                statement = statement.where(NodeMapping.node_id == int(query))
            else:
                try:
                    address = format_long_address(address_from_barcode(query))
                except ValueError as error:
                    raise UsageError(f"{error}; or give a numeric node ID") from None
                statement = statement.where(Optimizer.long_address == address)
            if gateway_id is not None:
                statement = statement.where(NodeMapping.gateway_id == gateway_id)
            rows = [
                _mapping_row(mapping, optimizer)
                for mapping, optimizer in session.execute(
                    statement.order_by(NodeMapping.valid_from, NodeMapping.node_id)
                )
            ]
        if not rows:
            raise NotFoundError(f"no mapping history for {query!r} in the state database")
        return rows

    def set_labels(
        self,
        barcode: str,
        *,
        name: str | None = None,
        string: str | None = None,
        note: str | None = None,
        clear: bool = False,
    ) -> Labels:
        try:
            address = format_long_address(address_from_barcode(barcode))
        except ValueError as error:
            raise UsageError(str(error)) from None
        with self.session() as session, session.begin():
            optimizer = session.scalars(
                select(Optimizer).where(Optimizer.long_address == address)
            ).one_or_none()
            if optimizer is None:
                raise NotFoundError(
                    f"barcode {barcode.upper()} is not known yet (see `recorder nodes list`); "
                    "it appears once the recorder has heard it in a node table or topology report"
                )
            if clear:
                optimizer.name = optimizer.string = optimizer.note = None
            if name is not None:
                optimizer.name = name or None
            if string is not None:
                optimizer.string = string or None
            if note is not None:
                optimizer.note = note or None
            return Labels(optimizer.name, optimizer.string)

    # ----------------------------------------------------------------------------------------
    # Import / export

    def import_records(
        self,
        mappings: list[ImportedMapping],
        gateways: list[ImportedGateway],
        labels: list[ImportedLabels],
        at: datetime,
    ) -> tuple[int, int]:
        """All or nothing: one transaction. Returns (mappings that changed something, gateways)."""
        changed = 0
        with self.session() as session, session.begin():
            for gateway in gateways:
                self._gateway(session, gateway.gateway_id, gateway.long_address, gateway.version, at)
            for mapping in sorted(mappings, key=lambda m: m.valid_from):
                before = session.scalar(select(func.count()).select_from(NodeMapping))
                self._mapping(
                    session,
                    mapping.gateway_id,
                    mapping.node_id,
                    mapping.long_address,
                    mapping.source,
                    mapping.valid_from,
                    mapping.valid_to,
                )
                after = session.scalar(select(func.count()).select_from(NodeMapping))
                changed += bool(after != before)
            for label in labels:
                optimizer = self._optimizer(session, label.long_address, at)
                optimizer.name, optimizer.string, optimizer.note = label.name, label.string, label.note
        return changed, len(gateways)

    def export(self) -> dict[str, Any]:
        def iso(at: datetime | None) -> str | None:
            return at.isoformat() if at else None

        with self.session() as session:
            return {
                "format": "recorder-nodes",
                "version": 1,
                "gateways": [
                    {
                        "gateway_id": g.gateway_id,
                        "long_address": g.long_address,
                        "barcode": g.barcode,
                        "version": g.version,
                    }
                    for g in session.scalars(select(Gateway).order_by(Gateway.gateway_id))
                ],
                "optimizers": [
                    {
                        "long_address": o.long_address,
                        "barcode": o.barcode,
                        "name": o.name,
                        "string": o.string,
                        "note": o.note,
                    }
                    for o in session.scalars(select(Optimizer).order_by(Optimizer.long_address))
                ],
                "mappings": [
                    {
                        "gateway_id": m.gateway_id,
                        "node_id": m.node_id,
                        "long_address": o.long_address,
                        "barcode": o.barcode,
                        "valid_from": iso(m.valid_from),
                        "valid_to": iso(m.valid_to),
                        "source": m.source,
                    }
                    for m, o in session.execute(
                        select(NodeMapping, Optimizer)
                        .join(Optimizer)
                        .order_by(NodeMapping.gateway_id, NodeMapping.node_id, NodeMapping.valid_from)
                    )
                ],
            }

    # ----------------------------------------------------------------------------------------
    # Health

    def put_state(
        self, key: str, value: dict[str, Any], at: datetime, *, activity: ActivityTally | None = None
    ) -> None:
        """Save a small JSON value; with `activity`, also the node activity tallied since the last
        save, in the same transaction (on an SD card each commit costs a few pages whatever it
        holds, so `recorder run` saves both at once)."""
        with self.session() as session, session.begin():
            if activity:
                self._save_activity(session, activity)
            row = session.get(RecorderState, key)
            text = json.dumps(value, default=str)
            if row is None:
                session.add(RecorderState(key=key, value=text, updated_at=at))
            else:
                row.value, row.updated_at = text, at

    def get_state(self, key: str) -> tuple[dict[str, Any], datetime] | None:
        with self.session() as session:
            row = session.get(RecorderState, key)
            if row is None:
                return None
            loaded: dict[str, Any] = json.loads(row.value)
            return loaded, row.updated_at
