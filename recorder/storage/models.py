"""Tables of the state database (SQLAlchemy 2.0, typed).

* `gateways`: one row per gateway ID seen, with its long address, barcode and firmware version.
* `optimizers`: one row per physical optimizer (long address, barcode) with the user's labels.
* `node_mappings`: the history of (gateway, node ID) -> optimizer assignments, as intervals
  `[valid_from, valid_to)`; `valid_to` NULL means "still valid". A change closes the open
  interval and opens a new one. `source` says how we learned it; `is_alias` marks bit-15 IDs.
* `node_activity`: per (gateway, node ID), when reports were first and last seen and how many.
* `outbox`: readings committed before they are sent to InfluxDB, deleted once acknowledged.
  `held` rows wait for the node's identity (the identity hold); `ready` rows can be sent.
* `parked_points`: points InfluxDB rejected as bad data (4xx), kept with the error.
* `recorder_state`: small key -> JSON values (health snapshot for `recorder status`; the energy
  accumulator's settings and position under `energy`).
* `energy_series`: one row per optimizer as the energy points name it (gateway, node ID, long
  address; NULL for readings written without a barcode) with its last integrated reading.
* `energy_hours`: per series, local day and elapsed hour of that day: energy, covered and
  uncovered time, readings, peak power, RSSI sum, highest temperature (`recorder.energy`).
  Without rowid, keyed (day, hour, series): a checkpoint rewrites only the current hour's rows,
  which sit together on one or two pages.

All times are stored as integer milliseconds since the Unix epoch, UTC (`UtcMillis`), so they
compare exactly and never depend on the SQLite driver's idea of time zones.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from recorder.timestamps import from_millis, to_millis

# Deterministic constraint names keep Alembic's batch migrations on SQLite reproducible.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcMillis(TypeDecorator[datetime]):
    """A timezone-aware datetime stored as integer milliseconds since the epoch."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the state database; times must be timezone-aware")
        return to_millis(value)

    def process_result_value(self, value: int | None, dialect: Dialect) -> datetime | None:
        return None if value is None else from_millis(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Gateway(Base):
    __tablename__ = "gateways"

    gateway_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    long_address: Mapped[str | None] = mapped_column(String(23))
    barcode: Mapped[str | None] = mapped_column(String(16))
    version: Mapped[str | None] = mapped_column(Text)
    first_seen: Mapped[datetime] = mapped_column(UtcMillis)
    last_seen: Mapped[datetime] = mapped_column(UtcMillis)


class Optimizer(Base):
    __tablename__ = "optimizers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    long_address: Mapped[str] = mapped_column(String(23), unique=True)
    barcode: Mapped[str | None] = mapped_column(String(16), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    string: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    first_seen: Mapped[datetime] = mapped_column(UtcMillis)
    last_seen: Mapped[datetime] = mapped_column(UtcMillis)

    mappings: Mapped[list[NodeMapping]] = relationship(back_populates="optimizer")


class NodeMapping(Base):
    __tablename__ = "node_mappings"
    __table_args__ = (
        UniqueConstraint("gateway_id", "node_id", "valid_from"),
        Index("ix_node_mappings_node", "gateway_id", "node_id", "valid_from"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gateway_id: Mapped[int] = mapped_column(Integer)
    node_id: Mapped[int] = mapped_column(Integer)
    optimizer_id: Mapped[int] = mapped_column(ForeignKey("optimizers.id"), index=True)
    valid_from: Mapped[datetime] = mapped_column(UtcMillis)
    valid_to: Mapped[datetime | None] = mapped_column(UtcMillis)
    source: Mapped[str] = mapped_column(String(32))
    is_alias: Mapped[bool] = mapped_column(Boolean, default=False)
    first_seen: Mapped[datetime] = mapped_column(UtcMillis)
    last_seen: Mapped[datetime] = mapped_column(UtcMillis)

    optimizer: Mapped[Optimizer] = relationship(back_populates="mappings")


class NodeActivity(Base):
    __tablename__ = "node_activity"

    gateway_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    node_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    first_report_at: Mapped[datetime] = mapped_column(UtcMillis)
    last_report_at: Mapped[datetime] = mapped_column(UtcMillis)
    report_count: Mapped[int] = mapped_column(BigInteger, default=0)


OUTBOX_READY = "ready"
OUTBOX_HELD = "held"


class OutboxEntry(Base):
    """A reading waiting to be acknowledged by InfluxDB. Raw wire values, so nothing is lost."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("gateway_id", "node_id", "measured_at"),
        Index("ix_outbox_state", "state", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(String(8))
    gateway_id: Mapped[int] = mapped_column(Integer)
    node_id: Mapped[int] = mapped_column(Integer)
    measured_at: Mapped[datetime] = mapped_column(UtcMillis)
    received_at: Mapped[datetime] = mapped_column(UtcMillis)
    enqueued_at: Mapped[datetime] = mapped_column(UtcMillis)
    slot_counter: Mapped[int] = mapped_column(Integer)
    voltage_in_raw: Mapped[int] = mapped_column(Integer)
    voltage_out_raw: Mapped[int] = mapped_column(Integer)
    duty_cycle_raw: Mapped[int] = mapped_column(Integer)
    current_in_raw: Mapped[int] = mapped_column(Integer)
    temperature_raw: Mapped[int] = mapped_column(Integer)
    rssi: Mapped[int] = mapped_column(Integer)
    long_address: Mapped[str | None] = mapped_column(String(23))


class ParkedPoint(Base):
    """A point InfluxDB refused as bad data: kept for a human, never retried automatically."""

    __tablename__ = "parked_points"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    line: Mapped[str] = mapped_column(Text)
    error: Mapped[str] = mapped_column(Text)
    parked_at: Mapped[datetime] = mapped_column(UtcMillis)


class RecorderState(Base):
    __tablename__ = "recorder_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcMillis)


class EnergySeries(Base):
    """An optimizer as the energy points name it, and where its integral has got to."""

    __tablename__ = "energy_series"
    __table_args__ = (UniqueConstraint("gateway_id", "node_id", "long_address"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gateway_id: Mapped[int] = mapped_column(Integer)
    node_id: Mapped[int] = mapped_column(Integer)
    long_address: Mapped[str | None] = mapped_column(String(23))
    last_at: Mapped[datetime | None] = mapped_column(UtcMillis)
    last_power: Mapped[float] = mapped_column(Float, default=0.0)


class EnergyHour(Base):
    """One series' hour of one local day (`day` is the local date, `hour` elapsed hours from its
    midnight: 0..22 on a 23-hour day, 0..24 on a 25-hour one)."""

    __tablename__ = "energy_hours"
    __table_args__ = {"sqlite_with_rowid": False}  # noqa: RUF012 (SQLAlchemy's declaration)

    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    hour: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    series_id: Mapped[int] = mapped_column(ForeignKey("energy_series.id"), primary_key=True)
    energy_wh: Mapped[float] = mapped_column(Float)
    covered_ms: Mapped[int] = mapped_column(BigInteger)
    uncovered_ms: Mapped[int] = mapped_column(BigInteger)
    readings: Mapped[int] = mapped_column(Integer)
    peak_w: Mapped[float] = mapped_column(Float)
    rssi_sum: Mapped[int] = mapped_column(BigInteger)
    temperature_max: Mapped[float | None] = mapped_column(Float)
