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
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from recorder.errors import UsageError
from recorder.identity import IdentityMap, Interval
from recorder.observer import ALIAS_BIT, GatewayLearned, MappingLearned, Output
from recorder.protocol.barcode import (
    address_from_barcode,
    barcode_from_address,
    format_long_address,
    parse_long_address,
)
from recorder.reading import Activity, Reading, count_activity
from recorder.storage import queries
from recorder.storage.db import Synchronous, memory_database, open_database
from recorder.storage.models import (
    Gateway,
    NodeActivity,
    NodeMapping,
    Optimizer,
    RecorderState,
)
from recorder.storage.queries import NodeRow

__all__ = ["ImportedGateway", "ImportedLabels", "ImportedMapping", "Labels", "NodeRow", "StateStore"]
from recorder.timestamps import from_millis, to_millis


class ActivityTally:
    """Power reports per (gateway, node) not saved yet, counted by `count_activity` (the one rule
    `run` and `backfill` count node activity by): (gateway, node) -> [first ms, last ms, count]."""

    __slots__ = ("nodes",)

    def __init__(self) -> None:
        self.nodes: Activity = {}

    def add(self, readings: Iterable[Reading]) -> None:
        count_activity(self.nodes, readings)

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


class StateStore:
    """The state database's identity, labels, node activity and health (module docstring): loads
    what the observer starts from, persists what it learns; each method one short transaction."""

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
        how: str | None = None,
        synchronous: Synchronous = "NORMAL",
    ) -> StateStore:
        """The state database for writing (created and migrated as needed); `how` is for messages,
        `synchronous` as `open_database` says."""
        engine = open_database(
            path, migrate=migrate, create_directory=create_directory, how=how, synchronous=synchronous
        )
        return cls(engine)

    @classmethod
    def in_memory(cls, copy_of: sqlite3.Connection | None = None) -> StateStore:
        """A store that leaves no trace: empty, or a copy of another database (see `memory_database`)."""
        return cls(memory_database(copy_of))

    def close(self) -> None:
        self.engine.dispose()

    def session(self) -> Session:
        return self._sessions()

    # ----------------------------------------------------------------------------------------
    # Loading into memory

    def identity_map(self) -> IdentityMap:
        with self._connection() as connection:
            return queries.identity_map(connection)

    def mapping_version(self) -> tuple[int, int, int]:
        """Changes whenever a mapping interval is added (by any process)."""
        with self.session() as session:
            count, newest, latest = session.execute(
                select(func.count(), func.max(NodeMapping.id), func.max(NodeMapping.valid_from))
            ).one()
        return int(count), int(newest or 0), to_millis(latest) if latest else 0

    def gateway_addresses(self) -> dict[int, bytes]:
        with self._connection() as connection:
            return queries.gateway_addresses(connection)

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
        readings: list[Reading] = []
        for output in outputs:
            if isinstance(output, tuple):  # a reading
                readings.append(output)
            elif isinstance(output, MappingLearned):
                mappings.append(output)
            elif isinstance(output, GatewayLearned):
                gateways.append(output)
        activity.add(readings)
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
        for (gateway_id, node_id), (first, last, count) in activity.nodes.items():
            self._activity(session, gateway_id, node_id, count, from_millis(first), from_millis(last))

    def record_activity(self, activity: Mapping[tuple[int, int], Sequence[int]]) -> None:
        """Node activity counted elsewhere (a backfill, by `count_activity`): (gateway, node) ->
        (first ms, last ms, count).

        Times merge (earliest first, latest last); counts add up, so a period replayed twice
        counts twice, while its points land on themselves in InfluxDB.
        """
        if not activity:
            return
        with self.session() as session, session.begin():
            for (gateway_id, node_id), (first, last, count) in activity.items():
                self._activity(session, gateway_id, node_id, count, from_millis(first), from_millis(last))

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
        """The long address behind a node ID at `at`, by the rules of `recorder.identity`."""
        identities = IdentityMap()
        with self.session() as session:
            rows = session.execute(
                select(NodeMapping.valid_from, NodeMapping.source, Optimizer.long_address)
                .join(Optimizer)
                .where(NodeMapping.gateway_id == gateway_id, NodeMapping.node_id == node_id)
            )
            for valid_from, source, long_address in rows:
                identities.seed(
                    (gateway_id, node_id),
                    Interval(to_millis(valid_from), parse_long_address(long_address), source),
                )
        return identities.resolve((gateway_id, node_id), to_millis(at))

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """The engine's own `sqlite3` connection, for the questions in `recorder.storage.queries`."""
        pooled = self.engine.raw_connection()
        try:
            driver = pooled.driver_connection
            assert isinstance(driver, sqlite3.Connection)
            yield driver
        finally:
            pooled.close()

    def list_nodes(self, *, gateway_id: int | None = None, unresolved: bool = False) -> list[NodeRow]:
        with self._connection() as connection:
            return queries.list_nodes(connection, gateway_id=gateway_id, unresolved=unresolved)

    def history(self, query: str, *, gateway_id: int | None = None) -> list[NodeRow]:
        """Every interval for a barcode (across node IDs) or for a node ID (across gateways)."""
        with self._connection() as connection:
            return queries.history(connection, query, gateway_id=gateway_id)

    def set_labels(
        self,
        barcode: str,
        *,
        at: datetime,
        name: str | None = None,
        string: str | None = None,
        note: str | None = None,
        clear: bool = False,
    ) -> Labels:
        """Name an optimizer and its string (`at`: now, when an unheard optimizer gets its row)."""
        try:
            address = format_long_address(address_from_barcode(barcode))
        except ValueError as error:
            raise UsageError(str(error)) from None
        with self.session() as session, session.begin():
            optimizer = session.scalars(
                select(Optimizer).where(Optimizer.long_address == address)
            ).one_or_none()
            if optimizer is None:
                # Labels before sunrise: an optimizer not heard yet gets its row now, keyed by the
                # long address its barcode encodes, and the labels apply once it reports. (Seen
                # times start at the labelling, as for `nodes import`; mappings keep their own.)
                address_bytes = address_from_barcode(barcode)
                optimizer = self._optimizer(session, address_bytes, at)
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
        with self._connection() as connection:
            return queries.export(connection)

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
        with self._connection() as connection:
            return queries.get_state(connection, key)
