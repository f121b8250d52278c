"""Persisting the energy accumulator: series positions, hourly buckets and its settings.

A checkpoint is one transaction that writes what changed since the previous one (the series
whose last integrated reading moved, the hours that changed: normally the current hour's rows
only), and the accumulator's settings and newest measurement time (`recorder_state` key
`energy`). What was integrated after the last checkpoint is lost by a power cut (the keeper
checkpoints every 10 minutes and at a clean stop: `recorder.energy_keeper`).

`load()` returns what a new accumulator needs: every series' position and the hours of the days
that can still change (the day of each series' last integrated reading, and later ones).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, cast

from sqlalchemy import Engine, Table, bindparam, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from recorder.energy import Changes, HourTotals, LocalDays, SeriesKey, SeriesState
from recorder.protocol.barcode import format_long_address, parse_long_address
from recorder.storage.models import EnergyHour, EnergySeries, RecorderState
from recorder.timestamps import from_millis, to_millis

STATE_KEY = "energy"


@dataclass
class PersistedEnergy:
    settings: dict[str, Any] = field(default_factory=dict)  # timezone, max_gap_seconds, unsent_days
    newest_ms: int | None = None
    series: list[SeriesState] = field(default_factory=list)
    hours: list[tuple[SeriesKey, date, int, HourTotals]] = field(default_factory=list)


def series_key(gateway_id: int, node_id: int, long_address: str | None) -> SeriesKey:
    return (gateway_id, node_id, parse_long_address(long_address) if long_address else None)


def hour_totals(row: Any) -> HourTotals:
    return HourTotals(
        row.energy_wh,
        row.covered_ms,
        row.uncovered_ms,
        row.readings,
        row.peak_w,
        row.rssi_sum,
        row.temperature_max,
    )


class EnergyStore:
    """The energy tables of the state database (one writer: the run loop's thread)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._series = cast(Table, EnergySeries.__table__)
        self._hours = cast(Table, EnergyHour.__table__)
        self._state = cast(Table, RecorderState.__table__)
        self._ids: dict[SeriesKey, int] = {}

    def load(self, days: LocalDays) -> PersistedEnergy:
        loaded = PersistedEnergy()
        open_from: dict[int, date] = {}
        with self.engine.connect() as connection:
            text = connection.execute(
                select(self._state.c.value).where(self._state.c.key == STATE_KEY)
            ).scalar_one_or_none()
            if text:
                loaded.settings = json.loads(text)
                loaded.newest_ms = loaded.settings.get("newest_ms")
            for row in connection.execute(select(self._series)):
                key = series_key(row.gateway_id, row.node_id, row.long_address)
                self._ids[key] = row.id
                if row.last_at is not None:
                    last_ms = to_millis(row.last_at)
                    loaded.series.append(SeriesState(key, last_ms, row.last_power))
                    open_from[row.id] = days.day_of(last_ms)
            if open_from:
                keys = {identifier: key for key, identifier in self._ids.items()}
                earliest = min(open_from.values()).isoformat()
                query = select(self._hours).where(self._hours.c.day >= earliest)
                for row in connection.execute(query):
                    day = date.fromisoformat(row.day)
                    start = open_from.get(row.series_id)
                    if start is not None and day >= start:
                        loaded.hours.append((keys[row.series_id], day, row.hour, hour_totals(row)))
        return loaded

    def day_hours(self, wanted: set[date]) -> dict[tuple[SeriesKey, date], dict[int, HourTotals]]:
        """Every series' hours of the given days (to re-emit their points)."""
        found: dict[tuple[SeriesKey, date], dict[int, HourTotals]] = {}
        if not wanted:
            return found
        with self.engine.connect() as connection:
            query = (
                select(
                    self._hours,
                    self._series.c.gateway_id,
                    self._series.c.node_id,
                    self._series.c.long_address,
                )
                .join(self._series, self._series.c.id == self._hours.c.series_id)
                .where(self._hours.c.day.in_(sorted(day.isoformat() for day in wanted)))
            )
            for row in connection.execute(query):
                key = series_key(row.gateway_id, row.node_id, row.long_address)
                found.setdefault((key, date.fromisoformat(row.day)), {})[row.hour] = hour_totals(row)
        return found

    def checkpoint(self, changes: Changes, settings: dict[str, Any]) -> None:
        """Write `changes` and `settings` in one transaction."""
        # The cache learns a new series' ID only once its row is committed: a transaction that
        # fails (a full disk) rolls the row back, and the next checkpoint must insert it again.
        ids = dict(self._ids)
        with self.engine.begin() as connection:
            for key in {state.key for state in changes.series} | {key for key, *_ in changes.hours}:
                if key not in ids:
                    gateway_id, node_id, address = key
                    result = connection.execute(
                        self._series.insert().values(
                            gateway_id=gateway_id,
                            node_id=node_id,
                            long_address=format_long_address(address) if address else None,
                            last_at=None,
                            last_power=0.0,
                        )
                    )
                    ids[key] = int(cast(Any, result.inserted_primary_key)[0])
            if changes.series:
                connection.execute(
                    self._series.update()
                    .where(self._series.c.id == bindparam("series"))
                    .values(last_at=bindparam("at"), last_power=bindparam("power")),
                    [
                        {
                            "series": ids[state.key],
                            "at": from_millis(state.last_ms),
                            "power": state.last_power,
                        }
                        for state in changes.series
                    ],
                )
            if changes.hours:
                statement = sqlite_insert(self._hours)
                values = {
                    name: statement.excluded[name]
                    for name in (
                        "energy_wh",
                        "covered_ms",
                        "uncovered_ms",
                        "readings",
                        "peak_w",
                        "rssi_sum",
                        "temperature_max",
                    )
                }
                connection.execute(
                    statement.on_conflict_do_update(index_elements=["day", "hour", "series_id"], set_=values),
                    [
                        {
                            "day": day.isoformat(),
                            "hour": hour,
                            "series_id": ids[key],
                            "energy_wh": totals.energy_wh,
                            "covered_ms": totals.covered_ms,
                            "uncovered_ms": totals.uncovered_ms,
                            "readings": totals.readings,
                            "peak_w": totals.peak_w,
                            "rssi_sum": totals.rssi_sum,
                            "temperature_max": totals.temperature_max,
                        }
                        for key, day, hour, totals in changes.hours
                    ],
                )
            # updated_at is bookkeeping about when it was saved (wall clock), as for the health snapshot.
            state = sqlite_insert(self._state).values(
                key=STATE_KEY, value=json.dumps(settings, sort_keys=True), updated_at=datetime.now(UTC)
            )
            connection.execute(
                state.on_conflict_do_update(
                    index_elements=["key"],
                    set_={"value": state.excluded.value, "updated_at": state.excluded.updated_at},
                )
            )
        self._ids = ids
