"""Energy per optimizer and local day: the trapezoid integral of power over measurement time.

Theory of operation
-------------------
The accumulator consumes samples (gateway, node, long address or None, measurement time, power,
RSSI, temperature) and keeps, per *series* (one optimizer as the points name it: gateway, node
ID and the long address valid at the measurement time, or None for a reading written without a
barcode), hourly buckets of the site's local days. It does no IO and never reads the clock.

* **Integral.** Consecutive readings of a series, in measurement order, form trapezoids:
  `(p1 + p2) / 2 × (t2 - t1)`. A pair more than `max_gap` apart (default 10 min) contributes
  nothing; when both readings fall in the same local day its length is counted as
  `uncovered` time. A pair that straddles local midnight with a gap that long is the night: it is
  neither energy nor uncovered time (optimizers sleep in the dark). So `uncovered` means "holes
  inside the optimizer's own reporting span of that day"; a panel that goes silent for the rest
  of a day shows in `recorder report` as `not_reporting`, measured against its neighbours.
* **Days and hours.** A local day is `[local midnight, next local midnight)` in the site's time
  zone (23 or 25 hours on DST days; when midnight happens twice, the first one; when the clocks
  skip it, the moment they jump). Hours are elapsed hours since the day's start (0..24), so a
  25-hour day has 25 buckets and none is counted twice. Every trapezoid is split at hour
  boundaries (and so at midnight) with the linearly interpolated power there, as InfluxQL's
  `integral()` does with `GROUP BY time(1d) tz(...)`. Each reading's own statistics (count, peak
  power, RSSI sum, highest temperature) go to the bucket it was measured in.
* **Order.** Reports arrive late (delivered tens of seconds after measurement) or bundled, so each
  series keeps a small reorder buffer: a reading is integrated once the newest measurement time
  seen anywhere is `REORDER_WINDOW` (5 min) past it. A report cannot be placed more than one
  slot-counter cycle (~4 min) late, so every placeable reading is integrated in measurement order.
  A reading at or before its series' last integrated reading is skipped and counted (`late`):
  that is also what makes feeding the same reading twice harmless (a replay, a restart that
  re-feeds the outbox). `close()` integrates everything buffered (a clean stop).
* **Result.** The same set of readings always gives bit-identical totals, whatever the chunking of
  the feed, because integration happens in measurement order with the same float operations.

`recorder.storage.energy` persists the buckets and each series' last integrated reading; the run
loop (`recorder.run.loop`) feeds readings when they become ready to send, so energy follows the
identity hold exactly as the `tigo_optimizer` points do.

`recorder backfill` uses `ReplayEnergy`: the same `Sample`s (`Sample.of` the same compact
readings of the one placement step, `recorder.placement`), fed as each reading becomes a point,
an accumulator of the same zone and gap, closed at the end of the input; the `DayTotals` of the
days it replayed become `tigo_energy` lines (`recorder.sinks.points.energy_line`).
"""

from __future__ import annotations

import bisect
import math
import operator
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from recorder.errors import ConfigError
from recorder.reading import Reading
from recorder.sinks.points import power_value
from recorder.timestamps import to_millis

HOUR_MS = 3_600_000
REORDER_WINDOW_MS = 300_000
DEFAULT_MAX_GAP = timedelta(minutes=10)
_TRAPEZOID_TO_WH = 2 * HOUR_MS  # (p1 + p2) / 2 × ms / 3.6e6 ms per hour

SeriesKey = tuple[int, int, bytes | None]  # gateway ID, node ID, long address (None: unresolved)


class Sample(NamedTuple):
    """The values of one reading that energy and panel health need. A tuple, not a dataclass:
    a backfill makes one per reading, and its first three fields are the series key."""

    gateway_id: int
    node_id: int
    long_address: bytes | None
    measured_ms: int
    power: float  # W, voltage_in × current_in: the same float as the point's `power` field
    rssi: int
    temperature: float  # °C

    @property
    def key(self) -> SeriesKey:
        return (self.gateway_id, self.node_id, self.long_address)

    @classmethod
    def of(cls, reading: Reading) -> Sample:
        """A compact reading's sample (`recorder.reading`), with the identity it is sent with."""
        return samples_of((reading,))[0]


_MEASURED_MS = operator.itemgetter(3)  # a Sample's measured_ms: the reorder buffer's sort key
_new_sample = tuple.__new__  # NamedTuple's own __new__ is a Python function: this skips it
# power_value by voltage_in_raw × current_in_raw, its only input (readings repeat values)
_POWERS: dict[int, float] = {}
_POWERS_KEPT = 1 << 16  # then cleared: under 10 MB


def samples_of(readings: Iterable[Reading]) -> list[Sample]:
    """`Sample.of` of each reading, in one loop: a backfill makes one per point."""
    powers = _POWERS
    if len(powers) > _POWERS_KEPT:
        powers.clear()
    samples: list[Sample] = []
    append = samples.append
    for reading in readings:
        (gateway_id, node_id, measured_ms, _received_ms, _slot_counter, voltage_in_raw,
         _voltage_out_raw, _duty_cycle_raw, current_in_raw, temperature_raw, rssi,
         long_address) = reading  # fmt: skip
        product = voltage_in_raw * current_in_raw
        power = powers.get(product)
        if power is None:
            power = powers[product] = power_value(voltage_in_raw, current_in_raw)
        append(
            _new_sample(
                Sample,
                (
                    gateway_id,
                    node_id,
                    long_address,
                    measured_ms,
                    power,
                    rssi,
                    temperature_raw / 10,  # 0.1 °C steps
                ),
            )
        )
    return samples


@dataclass(slots=True)
class HourTotals:
    """One series' hour of one local day."""

    energy_wh: float = 0.0
    covered_ms: int = 0  # time inside trapezoids that counted
    uncovered_ms: int = 0  # time inside gaps longer than max_gap (same day only)
    readings: int = 0
    peak_w: float = 0.0
    rssi_sum: int = 0
    temperature_max: float | None = None

    def copy(self) -> HourTotals:
        return HourTotals(
            self.energy_wh,
            self.covered_ms,
            self.uncovered_ms,
            self.readings,
            self.peak_w,
            self.rssi_sum,
            self.temperature_max,
        )


@dataclass(frozen=True, slots=True)
class DayTotals:
    """A series' day: what a `tigo_energy` point carries."""

    key: SeriesKey
    day: date
    day_start_ms: int
    energy_wh: float
    uncovered_seconds: int


def day_totals(key: SeriesKey, day: date, day_start_ms: int, hours: dict[int, HourTotals]) -> DayTotals:
    """Sum of the hours in hour order (the same float result wherever it is computed)."""
    energy = 0.0
    uncovered = 0
    for hour in sorted(hours):
        energy += hours[hour].energy_wh
        uncovered += hours[hour].uncovered_ms
    return DayTotals(key, day, day_start_ms, energy, uncovered // 1000)


@dataclass(frozen=True, slots=True)
class EnergyToday:
    """Energy so far on the local day integration has reached, for live outputs (MQTT).

    Made by `EnergyAccumulator.running_today` from the same `day_totals` as the `tigo_energy`
    points, so a series' value here is its point's `energy_wh` at that moment. Sums over several
    series use `math.fsum` (correctly rounded, so a sum never goes down while its parts go up:
    what Home Assistant's `total_increasing` needs).
    """

    day: date
    through_ms: int  # every reading measured up to here is integrated
    by_address: Mapping[bytes, float]  # Wh per long address (its series of the day, summed)
    by_gateway: Mapping[int, float]  # Wh per gateway, readings without a barcode included
    total: float  # Wh, every series

    @classmethod
    def of(cls, day: date, through_ms: int, by_series: Mapping[SeriesKey, float]) -> EnergyToday:
        addresses: dict[bytes, list[float]] = {}
        gateways: dict[int, list[float]] = {}
        for (gateway_id, _node_id, address), energy in by_series.items():
            gateways.setdefault(gateway_id, []).append(energy)
            if address is not None:
                addresses.setdefault(address, []).append(energy)
        return cls(
            day,
            through_ms,
            {address: math.fsum(parts) for address, parts in addresses.items()},
            {gateway: math.fsum(parts) for gateway, parts in gateways.items()},
            math.fsum(by_series.values()),
        )

    def of_addresses(self, addresses: Iterable[bytes]) -> float:
        """The total of a group of optimizers (a string), by their long addresses."""
        return math.fsum(self.by_address.get(address, 0.0) for address in set(addresses))


class LocalDays:
    """The local days and hours of one time zone, as millisecond boundaries."""

    def __init__(self, zone: tzinfo) -> None:
        self.zone = zone
        self._starts: dict[date, int] = {}
        # The last hour `locate` found: consecutive readings of a series mostly fall in one hour,
        # and the time-zone arithmetic is most of the cost of integrating a reading.
        self._hour: tuple[int, int, date, int] = (0, 0, date.min, 0)  # begin, end, day, hour

    def start_ms(self, day: date) -> int:
        start = self._starts.get(day)
        if start is None:
            # fold=0: the first of two midnights; a skipped midnight maps to the moment of the jump.
            start = self._starts[day] = to_millis(datetime.combine(day, time(), self.zone))
        return start

    def day_of(self, ms: int) -> date:
        instant = datetime.fromtimestamp(ms / 1000, UTC).astimezone(self.zone)
        day = instant.date()
        if ms < self.start_ms(day):
            return day - timedelta(days=1)
        following = day + timedelta(days=1)
        if ms >= self.start_ms(following):
            return following
        return day

    def locate(self, ms: int) -> tuple[date, int, int, int]:
        """(day, hour index, hour start ms, hour end ms) of the instant `ms`."""
        begin, end, day, hour = self._hour
        if begin <= ms < end:
            return day, hour, begin, end
        day = self.day_of(ms)
        start = self.start_ms(day)
        hour = (ms - start) // HOUR_MS
        begin = start + hour * HOUR_MS
        end = min(begin + HOUR_MS, self.start_ms(day + timedelta(days=1)))
        self._hour = (begin, end, day, hour)
        return day, hour, begin, end

    def hours_in(self, day: date) -> int:
        length = self.start_ms(day + timedelta(days=1)) - self.start_ms(day)
        return -(-length // HOUR_MS)


def zone_named(name: str | None) -> tuple[tzinfo, str]:
    """The zone for `--timezone` (an IANA name), or the machine's own zone when None."""
    if name:
        try:
            return ZoneInfo(name), name
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"timezone: {name!r} is not a known time zone (expected an IANA name such as Europe/Berlin)"
            ) from None
    return machine_zone()


def machine_zone() -> tuple[tzinfo, str]:
    """The machine's zone by name where it can be found (TZ, /etc/localtime, /etc/timezone)."""
    candidates = []
    if os.environ.get("TZ"):
        candidates.append(os.environ["TZ"].lstrip(":"))
    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        target = ""
    if "zoneinfo/" in target:
        candidates.append(target.split("zoneinfo/", 1)[1])
    try:
        with open("/etc/timezone", encoding="utf-8") as stream:
            candidates.append(stream.read().strip())
    except OSError:
        pass
    for candidate in candidates:
        try:
            return ZoneInfo(candidate), candidate
        except (ZoneInfoNotFoundError, ValueError):
            continue
    try:
        with open("/etc/localtime", "rb") as stream:
            return ZoneInfo.from_file(stream, key="localtime"), "localtime"
    except (OSError, ValueError):
        return ZoneInfo("UTC"), "UTC"


@dataclass(slots=True)
class _Series:
    key: SeriesKey
    last_ms: int | None = None  # the last integrated reading
    last_power: float = 0.0
    pending: list[Sample] = field(default_factory=list)  # the reorder buffer, in measurement order
    days: dict[date, dict[int, HourTotals]] = field(default_factory=dict)
    dirty: set[tuple[date, int]] = field(default_factory=set)
    moved: bool = False  # last_ms changed since the last checkpoint
    # The hour of the last integrated reading while it is dirty: (its end ms, its bucket). A
    # reading measured before that end lies in the same hour as its predecessor (20 s apart,
    # mostly), so its whole trapezoid and statistics go to this bucket without a look-up.
    current: tuple[int, HourTotals] | None = None


@dataclass(frozen=True, slots=True)
class SeriesState:
    """A series' persisted position: its last integrated reading."""

    key: SeriesKey
    last_ms: int
    last_power: float


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed since the last checkpoint: the rows to persist and the points to write."""

    series: list[SeriesState]
    hours: list[tuple[SeriesKey, date, int, HourTotals]]
    days: list[DayTotals]
    newest_ms: int | None


class EnergyAccumulator:
    """Per-series hourly energy and health statistics of local days (see the module docstring)."""

    def __init__(
        self, zone: tzinfo, max_gap: timedelta = DEFAULT_MAX_GAP, *, window_ms: int = REORDER_WINDOW_MS
    ) -> None:
        self.days = LocalDays(zone)
        self.max_gap_ms = int(max_gap.total_seconds() * 1000)
        self.window_ms = window_ms
        self.newest_ms: int | None = None
        self.integrated_through: int | None = None  # every reading measured up to here is integrated
        self.late = 0  # readings at or before their series' last integrated one (or repeats)
        self._series: dict[SeriesKey, _Series] = {}
        self._waiting: set[SeriesKey] = set()  # series with a non-empty reorder buffer

    # --- feeding ---------------------------------------------------------------------------------

    def feed(self, samples: Iterable[Sample], *, integrate: bool = True) -> None:
        """Buffer samples, then (unless `integrate` is False: the caller will `advance`)
        integrate what the newest measurement time has moved out of the reorder window."""
        newest = self.newest_ms
        known = self._series
        for sample in samples:
            key = sample[:3]  # the series key (gateway, node, long address): `Sample.key`
            series = known.get(key)
            if series is None:
                series = known[key] = _Series(key)
            at = sample[3]
            if series.last_ms is not None and at <= series.last_ms:
                self.late += 1
                continue
            pending = series.pending
            if not pending:
                pending.append(sample)
                self._waiting.add(key)  # a series is waiting exactly while its buffer is not empty
            elif at > pending[-1][3]:
                pending.append(sample)  # in order: the usual case
            else:
                index = bisect.bisect_left(pending, at, key=_MEASURED_MS)
                if pending[index][3] == at:
                    self.late += 1  # the same reading again
                    continue
                pending.insert(index, sample)
            if newest is None or at > newest:
                newest = at
        self.newest_ms = newest
        if integrate and newest is not None:
            self._integrate_through(newest - self.window_ms)

    def feed_readings(self, readings: Iterable[Reading], *, integrate: bool = True) -> None:
        self.feed(samples_of(readings), integrate=integrate)

    def advance(self, limit_ms: int) -> None:
        """Integrate what was measured up to `limit_ms` (the source's clock less the window, or
        the newest measurement less the window, whichever is later): a quiet night closes the
        window on the evening's last readings."""
        if self.newest_ms is not None:
            limit_ms = max(limit_ms, self.newest_ms - self.window_ms)
        self._integrate_through(limit_ms)

    def close(self) -> None:
        """Integrate everything buffered: a clean stop closes the reorder window."""
        if self._waiting:
            self._integrate_through(None)
        if self.newest_ms is not None and (
            self.integrated_through is None or self.newest_ms > self.integrated_through
        ):
            self.integrated_through = self.newest_ms

    def _integrate_through(self, limit: int | None) -> None:
        if limit is not None and (self.integrated_through is None or limit > self.integrated_through):
            self.integrated_through = limit
        done = []
        for key in self._waiting:
            series = self._series[key]
            pending = series.pending
            if limit is None or pending[-1][3] <= limit:
                self._integrate(series, pending)
                pending.clear()
                done.append(key)
            else:
                count = bisect.bisect_right(pending, limit, key=_MEASURED_MS)
                if count:
                    self._integrate(series, pending[:count])
                    del pending[:count]
        self._waiting.difference_update(done)

    def _integrate(self, series: _Series, samples: list[Sample]) -> None:
        """Integrate a series' next samples, in measurement order, each after its last one."""
        max_gap_ms = self.max_gap_ms
        current = series.current
        for sample in samples:
            at, power = sample[3], sample[4]
            if current is not None and at < current[0]:
                # In the hour of the series' last reading: what the general case (`_place`)
                # computes, with the one bucket both ends lie in (same hour, so same day).
                bucket = current[1]
                gap = at - series.last_ms  # type: ignore[operator]  # set with `current`
                if gap > max_gap_ms:
                    bucket.uncovered_ms += gap
                else:
                    bucket.energy_wh += (series.last_power + power) * gap / _TRAPEZOID_TO_WH
                    bucket.covered_ms += gap
            else:
                bucket = self._place(series, at, power)
                current = series.current
            bucket.readings += 1
            bucket.rssi_sum += sample[5]
            if power > bucket.peak_w:
                bucket.peak_w = power
            temperature = sample[6]
            if bucket.temperature_max is None or temperature > bucket.temperature_max:
                bucket.temperature_max = temperature
            series.last_ms, series.last_power = at, power
        series.moved = True

    def _place(self, series: _Series, at: int, power: float) -> HourTotals:
        """The trapezoid (or gap) from the series' last reading to `at`, split by hour; the
        bucket `at` falls in, which becomes the series' `current` hour."""
        days = self.days
        if series.last_ms is not None:
            start, start_power = series.last_ms, series.last_power
            gap = at - start
            if gap > self.max_gap_ms:
                if days.day_of(start) == days.day_of(at):
                    self._uncovered(series, start, at)
            else:
                self._trapezoid(series, start, start_power, at, power)
        day, hour, _, end = days.locate(at)
        bucket = self._bucket(series, day, hour)
        series.current = (end, bucket)
        return bucket

    def _trapezoid(self, series: _Series, t1: int, p1: float, t2: int, p2: float) -> None:
        gap = t2 - t1
        start, start_power = t1, p1
        while start < t2:
            day, hour, _, end = self.days.locate(start)
            if end >= t2:
                end, end_power = t2, p2
            else:
                end_power = p1 + (p2 - p1) * (end - t1) / gap
            bucket = self._bucket(series, day, hour)
            bucket.energy_wh += (start_power + end_power) * (end - start) / _TRAPEZOID_TO_WH
            bucket.covered_ms += end - start
            start, start_power = end, end_power

    def _uncovered(self, series: _Series, t1: int, t2: int) -> None:
        start = t1
        while start < t2:
            day, hour, _, end = self.days.locate(start)
            end = min(end, t2)
            self._bucket(series, day, hour).uncovered_ms += end - start
            start = end

    def _bucket(self, series: _Series, day: date, hour: int) -> HourTotals:
        hours = series.days.get(day)
        if hours is None:
            hours = series.days[day] = {}
        bucket = hours.get(hour)
        if bucket is None:
            bucket = hours[hour] = HourTotals()
        series.dirty.add((day, hour))
        return bucket

    # --- state -----------------------------------------------------------------------------------

    def restore(
        self,
        series: Iterable[SeriesState],
        hours: Iterable[tuple[SeriesKey, date, int, HourTotals]],
        newest_ms: int | None,
    ) -> None:
        """Load persisted state (before any feeding): positions, and the hours of open days."""
        for state in series:
            self._series[state.key] = _Series(state.key, state.last_ms, state.last_power)
        for key, day, hour, totals in hours:
            entry = self._series.get(key)
            if entry is None:
                entry = self._series[key] = _Series(key)
            entry.days.setdefault(day, {})[hour] = totals
        self.newest_ms = newest_ms

    def positions(self) -> Iterator[SeriesState]:
        for series in self._series.values():
            if series.last_ms is not None:
                yield SeriesState(series.key, series.last_ms, series.last_power)

    def take_changes(self) -> Changes:
        """Everything changed since the last call, and forget days that can no longer change.

        A day can change only while it is the day of the series' last integrated reading or
        later (integration moves forward from there), so older days leave memory once taken.
        """
        moved: list[SeriesState] = []
        hours: list[tuple[SeriesKey, date, int, HourTotals]] = []
        days: list[DayTotals] = []
        for series in self._series.values():
            if series.moved and series.last_ms is not None:
                moved.append(SeriesState(series.key, series.last_ms, series.last_power))
                series.moved = False
            if series.dirty:
                for day, hour in sorted(series.dirty):
                    hours.append((series.key, day, hour, series.days[day][hour].copy()))
                for day in sorted({day for day, _ in series.dirty}):
                    days.append(self.day(series.key, day, series.days[day]))
                series.dirty.clear()
                series.current = None  # its bucket must be marked dirty again when it changes
            if series.last_ms is not None:
                current = self.days.day_of(series.last_ms)
                for day in [day for day in series.days if day < current]:
                    del series.days[day]
        return Changes(moved, hours, days, self.newest_ms)

    def open_days(self) -> list[DayTotals]:
        """The totals of every day still in memory (what a restart re-emits)."""
        return [
            self.day(series.key, day, hours)
            for series in self._series.values()
            for day, hours in sorted(series.days.items())
        ]

    def day(self, key: SeriesKey, day: date, hours: dict[int, HourTotals]) -> DayTotals:
        return day_totals(key, day, self.days.start_ms(day), hours)

    def running_today(self) -> EnergyToday | None:
        """Each series' energy so far on the local day of `integrated_through` (None before any
        integration): the day changes when integration passes local midnight, the reorder window
        after it, so a day's last readings count in that day before its totals start again."""
        through = self.integrated_through
        if through is None:
            return None
        day = self.days.day_of(through)
        by_series = {}
        for series in self._series.values():
            hours = series.days.get(day)
            if hours:
                by_series[series.key] = self.day(series.key, day, hours).energy_wh
        return EnergyToday.of(day, through, by_series)

    def hours(self, key: SeriesKey, day: date) -> dict[int, HourTotals]:
        """The hours of a day still in memory (empty when none)."""
        series = self._series.get(key)
        return dict(series.days.get(day, {})) if series is not None else {}

    def keys(self) -> list[SeriesKey]:
        return list(self._series)


class ReplayEnergy:
    """Daily energy of a replay (`recorder backfill`), in memory: the readings it replays,
    integrated as `recorder run` integrates them, and the totals of every day they touched.

    A day's totals come from the replayed readings only: a replay of part of a day gives that
    part's energy (the README's partial-day rule). Memory stays flat over weeks: days that can
    no longer change leave the accumulator (`take_changes`) and only their totals are kept.
    """

    TAKE_EVERY = 200_000  # samples between harvests of finished days

    def __init__(self, timezone: str | None, max_gap: timedelta) -> None:
        zone, self.zone_name = zone_named(timezone)
        self.accumulator = EnergyAccumulator(zone, max_gap)
        self._totals: dict[tuple[SeriesKey, date], DayTotals] = {}
        self._fed = 0

    def feed(self, samples: list[Sample]) -> None:
        """Integrate `samples` (in any order within the reorder window) and empty the list."""
        if not samples:
            return
        self.accumulator.feed(samples)
        self._fed += len(samples)
        samples.clear()
        if self._fed >= self.TAKE_EVERY:
            self._fed = 0
            self._take()

    def days(self) -> list[DayTotals]:
        """The end of the input: every replayed day's totals, in (day, series) order."""
        self.accumulator.close()
        self._take()
        return sorted(
            self._totals.values(), key=lambda totals: (totals.day, totals.key[:2], totals.key[2] or b"")
        )

    def _take(self) -> None:
        for totals in self.accumulator.take_changes().days:
            self._totals[(totals.key, totals.day)] = totals
