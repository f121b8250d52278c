"""Per optimizer, the latest reading by measurement time: the memory behind every live output.

Theory of operation. `recorder run`'s read loop hands each batch of observer outputs to
`LatestReadings.observe` (one call; it keeps, per (gateway, node ID), the reading with the latest
*measurement* time, so a late or re-sent report never replaces a newer one). Live outputs (the
HTTP face; later an MQTT publisher) call `snapshot()` from their own threads: it copies the table
under a short lock and builds the `OptimizerNow` records outside it, so the read loop never waits
for a renderer.

Identity follows the outbox, so that a live view never shows an optimizer differently from how
InfluxDB will record it. The view does not decide anything itself; it is told by the same events:

* a reading arrives with the long address the observer resolved for its measurement time (the
  outbox commits it `ready`), or without one (the outbox commits it `held`);
* when the outbox releases held readings because a mapping was learned, the reader calls
  `identify(identities, keys)` and the view resolves its held entries with the same
  `IdentityMap.resolve` at their measurement time;
* when the outbox's identity hold expires and held readings are written without a barcode, the
  outbox reports which nodes (`Outbox.expire(released=...)`) and the reader passes them here as
  `hold_expired`; under `--on-unresolved drop` nothing is written, so nothing is passed.

Each `OptimizerNow` therefore carries `identity`: `resolved` (barcode known), `held` (no barcode
yet, readings waiting in the outbox: not in InfluxDB, so not in /metrics either) or `unresolved`
(the hold expired and readings went out tagged by node ID only: shown with an empty barcode).

Time: "now" is the source's time, advanced by the monotonic clock between readings. Live sources
stamp arrival with the wall clock, so this is the wall clock; a simulator or capture replay runs
on its own time, and its readings are not all stale just because they are from another day. When
the bus goes silent, the clock keeps running and readings become stale after `stale_after`.

The only place that turns a compact reading (`recorder.reading`) into values with units is
`latest_from_reading`: everything downstream uses `LatestReading`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from recorder.identity import IdentityMap
from recorder.protocol import units
from recorder.protocol.barcode import barcode_from_address
from recorder.reading import LONG_ADDRESS, MEASURED_MS, Reading, ReadingFields
from recorder.timestamps import from_millis

if TYPE_CHECKING:
    from recorder.energy import EnergyToday
    from recorder.storage.state import Labels

NodeKey = tuple[int, int]  # (gateway ID, node ID)

RESOLVED = "resolved"  # barcode known
HELD = "held"  # no barcode yet; its readings wait in the outbox (the identity hold)
UNRESOLVED = "unresolved"  # the hold expired: readings were written tagged by node ID only


@dataclass(frozen=True, slots=True)
class LatestReading:
    """What live outputs need of one reading: values in SI units, measurement time, identity."""

    gateway_id: int
    node_id: int
    measured_at: datetime
    long_address: bytes | None
    barcode: str | None
    power: float  # W, input side (Vin × Iin)
    voltage_in: float  # V
    voltage_out: float  # V
    current_in: float  # A
    current_out: float | None  # A; None when the duty cycle is 0
    temperature: float  # °C
    duty_cycle: float  # 0-1
    rssi: int  # raw


def latest_from_reading(reading: Reading, long_address: bytes | None = None) -> LatestReading:
    """The one adapter from a compact reading (and, when learned later, its address)."""
    fields = ReadingFields._make(reading)
    address = fields.long_address if long_address is None else long_address
    return LatestReading(
        gateway_id=fields.gateway_id,
        node_id=fields.node_id,
        measured_at=from_millis(fields.measured_ms),
        long_address=address,
        barcode=barcode_from_address(address) if address is not None else None,
        power=units.power(fields.voltage_in_raw, fields.current_in_raw),
        voltage_in=units.voltage_in(fields.voltage_in_raw),
        voltage_out=units.voltage_out(fields.voltage_out_raw),
        current_in=units.current_in(fields.current_in_raw),
        current_out=units.current_out(fields.current_in_raw, fields.duty_cycle_raw),
        temperature=units.temperature(fields.temperature_raw),
        duty_cycle=units.duty_cycle(fields.duty_cycle_raw),
        rssi=fields.rssi,
    )


@dataclass(frozen=True, slots=True)
class OptimizerNow:
    """One optimizer in a snapshot: its latest reading, identity state, labels and freshness."""

    reading: LatestReading
    identity: str  # RESOLVED, HELD or UNRESOLVED
    age: float  # seconds from the measurement to the snapshot's "now"
    stale: bool  # older than stale_after: values should not be shown as current
    name: str | None = None
    string: str | None = None
    energy_today: float | None = None  # Wh so far on the local day (None: no energy figures)

    @property
    def key(self) -> NodeKey:
        return (self.reading.gateway_id, self.reading.node_id)

    @property
    def published(self) -> bool:
        """True when InfluxDB shows (or will show) this optimizer: it has a barcode or the hold expired."""
        return self.identity != HELD


def fresh_total(optimizers: Iterable[OptimizerNow]) -> tuple[float, int]:
    """The power of a group (array, string, gateway): the sum over its optimizers whose latest
    reading is fresh, and how many those are. Every live output totals with this."""
    power = 0.0
    reporting = 0
    for optimizer in optimizers:
        if not optimizer.stale:
            power += optimizer.reading.power
            reporting += 1
    return power, reporting


@dataclass(frozen=True, slots=True)
class LatestSnapshot:
    now: datetime | None  # the view's clock (see the module docstring); None before any reading
    stale_after: timedelta
    optimizers: list[OptimizerNow]


class LatestReadings:
    """The latest reading per optimizer, fed by the read loop, read by live outputs (thread-safe)."""

    def __init__(self, stale_after: timedelta, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.stale_after = stale_after
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._readings: dict[NodeKey, Reading] = {}
        self._learned: dict[NodeKey, bytes] = {}  # addresses learned after the reading arrived
        self._hold_expired: set[NodeKey] = set()
        self._clock: tuple[datetime, float] | None = None  # (source time, monotonic) at the last batch

    # ---- the reader's side: cheap, under the lock only for dictionary updates ----------------

    def observe(self, readings: Iterable[Reading], at: datetime) -> None:
        """Take one batch of the observer's readings, received at source time `at`."""
        with self._lock:
            latest = self._readings
            for reading in readings:
                key = (reading[0], reading[1])
                current = latest.get(key)
                if current is None or reading[MEASURED_MS] >= current[MEASURED_MS]:
                    latest[key] = reading
                    self._learned.pop(key, None)
            self._clock = (at, self._monotonic())

    def identify(
        self,
        identities: IdentityMap,
        keys: Collection[NodeKey] | None = None,
        *,
        hold_expired: Iterable[NodeKey] = (),
    ) -> None:
        """Mirror the outbox: resolve held entries (of `keys`, or all) as `Outbox.release` does,
        and remember the nodes whose held readings the outbox wrote without a barcode."""
        with self._lock:
            self._hold_expired.update(hold_expired)
            for key, reading in self._readings.items():
                if reading[LONG_ADDRESS] is not None or key in self._learned:
                    continue
                if keys is not None and key not in keys:
                    continue
                address = identities.resolve(key, reading[MEASURED_MS])
                if address is not None:
                    self._learned[key] = address

    # ---- the outputs' side -----------------------------------------------------------------

    def now(self) -> datetime | None:
        with self._lock:
            clock = self._clock
        if clock is None:
            return None
        at, monotonic = clock
        return at + timedelta(seconds=max(self._monotonic() - monotonic, 0.0))

    def snapshot(
        self, labels: Mapping[bytes, Labels] | None = None, energy: EnergyToday | None = None
    ) -> LatestSnapshot:
        """Every optimizer's latest reading, with identity state, labels, age at "now" and, with
        `energy`, its energy so far today (by long address: 0 when it has none yet that day).

        An optimizer seen under two node IDs (an alias after re-commissioning, or a unit moved
        to another ID) appears once, with its latest reading.
        """
        with self._lock:
            readings = dict(self._readings)
            learned = dict(self._learned)
            hold_expired = set(self._hold_expired)
            clock = self._clock
        if clock is None:
            return LatestSnapshot(None, self.stale_after, [])
        now = clock[0] + timedelta(seconds=max(self._monotonic() - clock[1], 0.0))
        stale_seconds = self.stale_after.total_seconds()
        by_address: dict[bytes, OptimizerNow] = {}
        anonymous: list[OptimizerNow] = []
        for key, reading in readings.items():
            latest = latest_from_reading(reading, learned.get(key))
            address = latest.long_address
            if address is not None:
                identity = RESOLVED
            else:
                identity = UNRESOLVED if key in hold_expired else HELD
            age = (now - latest.measured_at).total_seconds()
            own = labels.get(address) if labels is not None and address is not None else None
            optimizer = OptimizerNow(
                reading=latest,
                identity=identity,
                age=age,
                stale=age > stale_seconds,
                name=own.name if own else None,
                string=own.string if own else None,
                energy_today=(
                    energy.by_address.get(address, 0.0)
                    if energy is not None and address is not None
                    else None
                ),
            )
            if address is None:
                anonymous.append(optimizer)
                continue
            other = by_address.get(address)
            if other is None or other.reading.measured_at < latest.measured_at:
                by_address[address] = optimizer
        optimizers = sorted([*by_address.values(), *anonymous], key=lambda o: o.key)
        return LatestSnapshot(now, self.stale_after, optimizers)
