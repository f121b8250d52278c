"""Panel health from the persisted energy: what each optimizer made, and which one is lagging.

`recorder report` reads the state database only (never InfluxDB) and turns the hourly buckets
of `recorder.energy` into one row per panel over the days asked:

* **Groups.** A panel is compared with its string (the `string` label); panels without one are
  compared with the other unlabelled panels of their gateway.
* **energy_wh, median_ratio.** The panel's energy over the days, and its ratio to the median
  energy of its group (the panel itself included; panels with no reading at all are left out of
  the median).
* **hours_not_reporting.** Hours (of each day asked) in which the panel made fewer than a quarter
  of the readings its group's median panel made, while that median panel reported steadily (at
  least half of the group's busiest hour). Dawn and dusk, when panels wake and sleep minutes
  apart, do not count; a panel that stops for an hour does.
* **Flags.** `not_reporting`: at least one such hour (a panel that stopped is named, not shown as
  zero energy). `underperforming`: its ratio is below the threshold (default 0.9) and it reported
  throughout (when it did not, the missing energy is explained by the missing readings; the ratio
  is still shown). `weak_radio`: its mean RSSI is below `WEAK_RSSI` (100, raw). The reported
  RSSI is a raw byte whose dBm scale is not known for newer radios (NOTES 8); healthy links are
  seen at about 120-200, and on the older radios' scale (255 ≈ −9 dBm, 20 ≈ −90 dBm) 100 is about
  −62 dBm, below anything a healthy installation shows. A link that weak also loses reports.

Times are the site's local days and hours as the recorder computed them (the zone it ran with).
"""

from __future__ import annotations

import json
import sqlite3
import statistics
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Engine, Table, create_engine, inspect, select
from sqlalchemy.pool import StaticPool

from recorder.energy import HOUR_MS, HourTotals, LocalDays, machine_zone
from recorder.errors import NotFoundError, StateDatabaseError, UsageError
from recorder.protocol.barcode import barcode_from_address, parse_long_address
from recorder.storage.energy import STATE_KEY, hour_totals
from recorder.storage.models import EnergyHour, EnergySeries, Gateway, NodeMapping, Optimizer, RecorderState

DEFAULT_THRESHOLD = 0.9
WEAK_RSSI = 100
QUIET_SHARE = 0.25  # fewer readings than this share of the group's median panel: not reporting
STEADY_SHARE = 0.5  # the median panel reported at least this share of the group's busiest hour

UNDERPERFORMING = "underperforming"
NOT_REPORTING = "not_reporting"
WEAK_RADIO = "weak_radio"


def read_only_engine(connection: sqlite3.Connection) -> Engine:
    """SQLAlchemy over a connection `recorder.storage.readonly` opened (the one rule for reading
    the state database without creating, migrating, locking or writing it)."""
    return create_engine("sqlite://", creator=lambda: connection, poolclass=StaticPool)


@dataclass
class Panel:
    """One optimizer's health over the days asked."""

    gateway_id: int
    node_id: int
    long_address: bytes | None
    barcode: str | None
    name: str | None
    string: str | None
    group: str
    energy_wh: float | None = None
    peak_w: float | None = None
    uncovered_seconds: int = 0
    readings: int = 0
    rssi_mean: float | None = None
    temperature_max: float | None = None
    median_ratio: float | None = None
    hours_not_reporting: int = 0
    flags: list[str] = field(default_factory=list)
    # (day, hour) -> the hour's totals, summed over the panel's series
    hours: dict[tuple[date, int], HourTotals] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.barcode or f"node {self.node_id}@{self.gateway_id}"

    def mean_power(self, day: date, hour: int) -> float | None:
        """Mean power in that hour over the time readings covered; None when nothing reported."""
        totals = self.hours.get((day, hour))
        if totals is None or not totals.readings:
            return None
        if totals.covered_ms:
            return totals.energy_wh * HOUR_MS / totals.covered_ms
        return totals.peak_w

    def as_json(self) -> dict[str, Any]:
        return {
            "barcode": self.barcode,
            "gateway_id": self.gateway_id,
            "node_id": self.node_id,
            "name": self.name,
            "string": self.string,
            "group": self.group,
            "energy_wh": _round(self.energy_wh, 3),
            "median_ratio": _round(self.median_ratio, 4),
            "peak_w": _round(self.peak_w, 3),
            "hours_not_reporting": self.hours_not_reporting,
            "uncovered_seconds": self.uncovered_seconds,
            "readings": self.readings,
            "rssi_mean": _round(self.rssi_mean, 1),
            "temperature_max": self.temperature_max,
            "flags": self.flags,
        }


@dataclass
class Report:
    """Every panel over `days`, in the zone the recorder computed them in."""

    days: list[date]
    zone_name: str
    threshold: float
    panels: list[Panel]
    day_starts: dict[date, int]

    def groups(self) -> dict[str, list[Panel]]:
        grouped: dict[str, list[Panel]] = {}
        for panel in self.panels:
            grouped.setdefault(panel.group, []).append(panel)
        return grouped

    def hours(self) -> list[int]:
        """The hours of the day (elapsed from local midnight) in which anything reported."""
        seen = sorted({hour for panel in self.panels for (_, hour), t in panel.hours.items() if t.readings})
        return list(range(seen[0], seen[-1] + 1)) if seen else []

    def hour_label(self, hour: int) -> str:
        start = self.day_starts[self.days[0]] + hour * HOUR_MS
        local = datetime.fromtimestamp(start / 1000, UTC).astimezone(_zone(self.zone_name))
        return local.strftime("%H:%M")

    def hourly_power(self, panel: Panel, hour: int) -> float | None:
        """Mean power at that hour of the day over the days asked (None: no report at all)."""
        energy = 0.0
        covered = 0
        readings = 0
        peak = 0.0
        for day in self.days:
            totals = panel.hours.get((day, hour))
            if totals is not None:
                energy += totals.energy_wh
                covered += totals.covered_ms
                readings += totals.readings
                peak = max(peak, totals.peak_w)
        if not readings:
            return None
        return energy * HOUR_MS / covered if covered else peak

    def anyone_reported(self, members: list[Panel], hour: int) -> bool:
        """Whether any of `members` reported at that hour of the day (on any of the days)."""
        return any(
            (totals := panel.hours.get((day, hour))) is not None and totals.readings
            for panel in members
            for day in self.days
        )

    @property
    def total_wh(self) -> float:
        return sum(panel.energy_wh or 0.0 for panel in self.panels)

    @property
    def period(self) -> str:
        first, last = self.days[0], self.days[-1]
        return first.isoformat() if first == last else f"{first.isoformat()} to {last.isoformat()}"


def _zone(name: str) -> Any:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return machine_zone()[0]


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def build_report(
    engine: Engine,
    *,
    day: date | None = None,
    days: int | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> Report:
    """Read the energy tables and judge every panel (see the module docstring)."""
    if days is not None and days < 1:
        raise UsageError("--days must be at least 1")
    if not 0 < threshold < 1:
        raise UsageError(f"--threshold: {threshold} is out of range, expected a fraction such as 0.9")
    with engine.connect() as connection:
        try:
            tables = set(inspect(connection).get_table_names())
        except Exception as error:  # not a database, unreadable
            raise StateDatabaseError(f"cannot read the state database: {error}") from None
        if "energy_hours" not in tables:
            raise NotFoundError(
                "no daily energy in this state database yet: it was last used by a recorder without "
                "it; `recorder run` with this version records it"
            )
        settings_text = connection.execute(
            select(RecorderState.value).where(RecorderState.key == STATE_KEY)
        ).scalar_one_or_none()
        zone_name = _settings_zone(settings_text)
        local_days = LocalDays(_zone(zone_name))
        recorded = [
            date.fromisoformat(value)
            for value in connection.execute(
                select(EnergyHour.day).distinct().order_by(EnergyHour.day)
            ).scalars()
        ]
        if not recorded:
            raise NotFoundError("no daily energy recorded yet (the recorder has not integrated a reading)")
        if day is not None:
            wanted = [day]
        else:
            last = recorded[-1]
            wanted = [last - timedelta(days=offset) for offset in range((days or 1) - 1, -1, -1)]
        if not set(wanted) & set(recorded):
            raise NotFoundError(
                f"no energy recorded on {', '.join(d.isoformat() for d in wanted)} "
                f"(recorded: {recorded[0].isoformat()} to {recorded[-1].isoformat()})"
            )
        names = {
            row.long_address: row
            for row in connection.execute(select(Optimizer.long_address, Optimizer.name, Optimizer.string))
        }
        gateways = {
            row.gateway_id: row.barcode
            for row in connection.execute(select(Gateway.gateway_id, Gateway.barcode))
        }
        panels: dict[object, Panel] = {}

        def panel_for(gateway_id: int, node_id: int, address_text: str | None) -> Panel:
            identity: object = address_text or (gateway_id, node_id)
            found = panels.get(identity)
            if found is None:
                labels = names.get(address_text) if address_text else None
                address = parse_long_address(address_text) if address_text else None
                string = labels.string if labels else None
                found = panels[identity] = Panel(
                    gateway_id=gateway_id,
                    node_id=node_id,
                    long_address=address,
                    barcode=barcode_from_address(address) if address else None,
                    name=labels.name if labels else None,
                    string=string,
                    group=string or f"gateway {gateways.get(gateway_id) or gateway_id}",
                )
            return found

        hours_table = cast(Table, EnergyHour.__table__)
        rows = connection.execute(
            select(hours_table, EnergySeries.gateway_id, EnergySeries.node_id, EnergySeries.long_address)
            .join(EnergySeries, EnergySeries.id == hours_table.c.series_id)
            .where(hours_table.c.day.in_([d.isoformat() for d in wanted]))
        )
        for row in rows:
            panel = panel_for(row.gateway_id, row.node_id, row.long_address)
            key = (date.fromisoformat(row.day), row.hour)
            totals = hour_totals(row)
            existing = panel.hours.get(key)
            panel.hours[key] = totals if existing is None else _merged(existing, totals)
        # Optimizers currently mapped but silent on these days are panels too: not zero, missing.
        current = connection.execute(
            select(NodeMapping.gateway_id, NodeMapping.node_id, Optimizer.long_address)
            .join(Optimizer)
            .where(NodeMapping.valid_to.is_(None), NodeMapping.node_id.op("&")(0x8000) == 0)
        )
        for gateway_id, node_id, address_text in current:
            panel_for(gateway_id, node_id, address_text)
    report = Report(
        days=wanted,
        zone_name=zone_name,
        threshold=threshold,
        panels=sorted(panels.values(), key=lambda p: (p.group, p.name or "", p.gateway_id, p.node_id)),
        day_starts={d: local_days.start_ms(d) for d in wanted},
    )
    _judge(report)
    return report


def _settings_zone(settings_text: str | None) -> str:
    if settings_text:
        zone = json.loads(settings_text).get("timezone")
        if zone:
            return str(zone)
    return machine_zone()[1]


def _merged(first: HourTotals, second: HourTotals) -> HourTotals:
    temperatures = [t for t in (first.temperature_max, second.temperature_max) if t is not None]
    return HourTotals(
        first.energy_wh + second.energy_wh,
        first.covered_ms + second.covered_ms,
        first.uncovered_ms + second.uncovered_ms,
        first.readings + second.readings,
        max(first.peak_w, second.peak_w),
        first.rssi_sum + second.rssi_sum,
        max(temperatures) if temperatures else None,
    )


def _judge(report: Report) -> None:
    for panel in report.panels:
        if panel.hours:
            energy = 0.0
            uncovered = 0
            for key in sorted(panel.hours):
                energy += panel.hours[key].energy_wh
                uncovered += panel.hours[key].uncovered_ms
            readings = sum(t.readings for t in panel.hours.values())
            panel.energy_wh = energy
            panel.uncovered_seconds = uncovered // 1000
            panel.readings = readings
            panel.peak_w = max(t.peak_w for t in panel.hours.values())
            rssi = sum(t.rssi_sum for t in panel.hours.values())
            panel.rssi_mean = rssi / readings if readings else None
            temperatures = [t.temperature_max for t in panel.hours.values() if t.temperature_max is not None]
            panel.temperature_max = max(temperatures) if temperatures else None
    slots = [(day, hour) for day in report.days for hour in range(25)]
    for members in report.groups().values():
        energies = [p.energy_wh for p in members if p.energy_wh is not None]
        median = statistics.median(energies) if energies else None
        counts = {
            slot: statistics.median(_readings(p, slot) for p in members) if len(members) > 1 else 0.0
            for slot in slots
        }
        busiest = max(counts.values(), default=0.0)
        for panel in members:
            if median and panel.energy_wh is not None:
                panel.median_ratio = panel.energy_wh / median
            if len(members) > 1 and busiest > 0:
                panel.hours_not_reporting = sum(
                    1
                    for slot in slots
                    if counts[slot] >= STEADY_SHARE * busiest
                    and _readings(panel, slot) < QUIET_SHARE * counts[slot]
                )
            flags = []
            if panel.hours_not_reporting:
                flags.append(NOT_REPORTING)
            elif panel.median_ratio is not None and panel.median_ratio < report.threshold:
                flags.append(UNDERPERFORMING)
            if panel.rssi_mean is not None and panel.rssi_mean < WEAK_RSSI:
                flags.append(WEAK_RADIO)
            panel.flags = flags


def _readings(panel: Panel, slot: tuple[date, int]) -> int:
    totals = panel.hours.get(slot)
    return totals.readings if totals is not None else 0
