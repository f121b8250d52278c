"""The physical array: optimizers, strings, weather, and what each optimizer measures.

Everything is derived from the seed, so a given configuration always yields the same array and
the same weather. Times are seconds since the simulation start (floats); local solar time is
taken from the start timestamp's UTC offset, and the day length from the day of the year
(location-free: ~16 h at the June solstice, ~8 h in December, northern-hemisphere-like).

Electrical model per string (what a Tigo TS4 optimizer does): the inverter holds the string at
the current of its unshaded panels. A panel that can deliver that current runs at duty 1
(Vout ≈ Vin, Iin = string current). A shaded panel cannot: its optimizer bucks, so Iin is its own
(lower) MPP current, the duty cycle is Iin / string current, and Vout = Vin × duty (power in ≈
power out). The reported current is always the *input* current (NOTES 5). A monitor-only unit has
no DC-DC stage and reports Vout ≈ 0 (NOTES 7).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from recorder.protocol.barcode import VENDOR_PREFIX, barcode_from_address
from recorder.protocol.events import PowerReport

FIRST_GATEWAY_ID = 0x1201
FIRST_NODE_ID = 2  # the gateway itself is node 1
PANELS_PER_STRING = 15
AWAKE_IRRADIANCE = 0.02  # below this an optimizer has no power and stays silent

# Panel model (a typical 400 W module, scaled by irradiance 0..1).
MPP_CURRENT_AT_FULL_SUN = 9.6  # A
MPP_VOLTAGE_AT_25C = 36.0  # V
VOLTAGE_TEMPERATURE_COEFFICIENT = -0.0032  # per °C
HEATING_AT_FULL_SUN = 28.0  # °C above ambient


@dataclass
class Optimizer:
    gateway_id: int
    node_id: int
    long_address: bytes
    string_name: str
    efficiency: float  # manufacturing spread, ±4 %
    monitor_only: bool
    shaded: bool  # a chimney shades it around midday
    rssi_base: int
    phase_slots: int
    short_address: int
    unknown: bytes

    @property
    def barcode(self) -> str:
        barcode = barcode_from_address(self.long_address)
        assert barcode is not None
        return barcode


@dataclass
class GatewayModel:
    gateway_id: int
    long_address: bytes
    version: str
    slot_seconds: float  # 5 ms × (1 + oscillator error)
    initial_slot: float  # unbounded slot count at t = 0
    optimizers: list[Optimizer]

    @property
    def barcode(self) -> str:
        barcode = barcode_from_address(self.long_address)
        assert barcode is not None
        return barcode

    def slot_at(self, seconds: float) -> float:
        return self.initial_slot + seconds / self.slot_seconds

    def time_of_slot(self, slot: float) -> float:
        return (slot - self.initial_slot) * self.slot_seconds


def optimizer_address(rng: random.Random, used: set[bytes]) -> bytes:
    while True:
        address = VENDOR_PREFIX + bytes((0x40, 0x00)) + rng.randbytes(3)
        if address[5] and address not in used:
            used.add(address)
            return address


class ArrayModel:
    """The installation: gateways with their optimizers, and the weather over them."""

    def __init__(self, start: datetime, gateways: int, nodes: int, seed: int, period_slots: int) -> None:
        rng = random.Random(f"array-{seed}")
        self.start = start
        self.seed = seed
        offset = start.utcoffset()
        self.utc_offset_hours = offset.total_seconds() / 3600 if offset else 0.0
        self._used_addresses: set[bytes] = set()
        self.gateways: list[GatewayModel] = []
        for index in range(gateways):
            gateway_id = FIRST_GATEWAY_ID + index
            optimizers = []
            for position in range(nodes):
                optimizers.append(
                    Optimizer(
                        gateway_id=gateway_id,
                        node_id=FIRST_NODE_ID + position,
                        long_address=optimizer_address(rng, self._used_addresses),
                        string_name=f"{chr(ord('A') + index)}{position // PANELS_PER_STRING + 1}",
                        efficiency=rng.uniform(0.96, 1.04),
                        monitor_only=False,
                        shaded=False,
                        rssi_base=rng.randint(125, 195),
                        # Phases spread the reports over the period (reference: PV configuration).
                        phase_slots=(position * period_slots) // nodes,
                        short_address=rng.randint(0x0002, 0xFFFE),
                        unknown=bytes((0x81, 0x00, rng.randint(0x40, 0x7F))),
                    )
                )
            if len(optimizers) >= 3:
                optimizers[1].shaded = True  # second panel of the first string: shaded at midday
                optimizers[-1].monitor_only = True  # a safety-only unit at the end
            self.gateways.append(
                GatewayModel(
                    gateway_id=gateway_id,
                    long_address=VENDOR_PREFIX + bytes((0x30, 0x00, 0x02)) + rng.randbytes(2),
                    version=f"Mgate Version G8.59\rJul  6 2020\r16:51:51\rGW-H158.4.3S0.{12 + index}\r",
                    slot_seconds=0.005 * (1 + rng.uniform(-0.008, 0.008)),
                    initial_slot=rng.uniform(0, 48000),
                    optimizers=optimizers,
                )
            )
        self._day_of_year: dict[int, int] = {}
        self._clouds: dict[int, list[tuple[float, float, float]]] = {}

    def replacement_address(self) -> bytes:
        rng = random.Random(f"replacement-{self.seed}")
        return optimizer_address(rng, self._used_addresses)

    # ---------------------------------------------------------------------------------------
    # Weather

    def local_hours(self, seconds: float) -> tuple[int, float]:
        """(day number since the epoch, hour of the local solar day) at `seconds` into the run."""
        local = self.start.timestamp() + seconds + self.utc_offset_hours * 3600
        day = int(local // 86400)
        return day, (local - day * 86400) / 3600

    def day_of_year(self, day: int) -> int:
        cached = self._day_of_year.get(day)
        if cached is None:
            cached = self._day_of_year[day] = (date(1970, 1, 1) + timedelta(days=day)).timetuple().tm_yday
        return cached

    def day_length_hours(self, day: int) -> float:
        return 12.0 + 4.0 * math.cos(2 * math.pi * (self.day_of_year(day) - 172) / 365.25)

    def sun(self, seconds: float) -> float:
        """Clear-sky irradiance, 0..1."""
        day, hour = self.local_hours(seconds)
        half = self.day_length_hours(day) / 2
        elevation = (hour - (12.0 - half)) / (2 * half)
        if not 0.0 < elevation < 1.0:
            return 0.0
        peak = 0.75 + 0.25 * (half * 2 - 8) / 8  # summer sun is stronger
        return float(peak * math.sin(math.pi * elevation) ** 1.3)

    def cloud_factor(self, seconds: float) -> float:
        hour_index = int(seconds // 3600)
        episodes = self._clouds.get(hour_index)
        if episodes is None:
            rng = random.Random(f"clouds-{self.seed}-{hour_index}")
            episodes = []
            for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
                begin = hour_index * 3600 + rng.uniform(0, 3600)
                episodes.append((begin, begin + rng.uniform(120, 900), rng.uniform(0.25, 0.8)))
            self._clouds[hour_index] = episodes
        factor = 1.0
        for index in (hour_index - 1, hour_index):
            for begin, end, depth in self._clouds.get(index, ()):
                if begin <= seconds < end:
                    factor *= 1 - depth
        return factor

    def irradiance(self, seconds: float) -> float:
        sun = self.sun(seconds)
        return sun * self.cloud_factor(seconds) if sun > 0 else 0.0

    def ambient_temperature(self, seconds: float) -> float:
        day, hour = self.local_hours(seconds)
        # ~24 °C mean in July, ~-2 °C in January: winter dawns go well below freezing.
        seasonal = 11.0 + 13.0 * math.cos(2 * math.pi * (self.day_of_year(day) - 200) / 365.25)
        diurnal = -7.0 * math.cos(2 * math.pi * (hour - 3.0) / 24)  # coldest near dawn
        return seasonal + diurnal

    def is_awake(self, seconds: float) -> bool:
        return self.irradiance(seconds) >= AWAKE_IRRADIANCE

    # ---------------------------------------------------------------------------------------
    # Electrical

    def measure(
        self, optimizer: Optimizer, seconds: float, slot_counter: int, rng: random.Random
    ) -> PowerReport:
        """What `optimizer` reports for a measurement at `seconds`, quantised as on the wire."""
        irradiance = self.irradiance(seconds)
        ambient = self.ambient_temperature(seconds)
        _, hour = self.local_hours(seconds)
        shade = 0.45 if optimizer.shaded and 10.5 <= hour <= 14.0 else 1.0
        own = irradiance * shade * optimizer.efficiency
        panel_temperature = ambient + HEATING_AT_FULL_SUN * irradiance + rng.uniform(-0.4, 0.4)
        low_light = 0.9 + 0.1 * min(1.0, own / 0.15)
        voltage = (
            MPP_VOLTAGE_AT_25C * (1 + VOLTAGE_TEMPERATURE_COEFFICIENT * (panel_temperature - 25)) * low_light
        )
        string_current = MPP_CURRENT_AT_FULL_SUN * irradiance  # set by the unshaded majority
        own_current = MPP_CURRENT_AT_FULL_SUN * own
        if optimizer.monitor_only:
            current_in, duty, voltage_out = string_current, 1.0, 0.0
        elif own_current >= string_current or string_current <= 0:
            current_in, duty, voltage_out = string_current, 1.0, max(0.0, voltage - 0.2)
        else:
            current_in = own_current
            duty = own_current / string_current
            voltage_out = voltage * duty
        voltage += rng.uniform(-0.05, 0.05)
        return PowerReport(
            voltage_in_raw=_quantise(voltage, 20, 0, 0xFFF),  # 50 mV steps
            voltage_out_raw=_quantise(voltage_out, 10, 0, 0xFFF),  # 100 mV steps
            duty_cycle_raw=_quantise(duty, 255, 0, 255),
            current_in_raw=_quantise(current_in, 200, 0, 0xFFF),  # 5 mA steps
            temperature_raw=_quantise(panel_temperature, 10, -0x800, 0x7FF),  # 0.1 °C steps
            unknown=optimizer.unknown,
            slot_counter=slot_counter,
            rssi=max(0, min(255, optimizer.rssi_base + rng.randint(-6, 6))),
        )


def _quantise(value: float, steps_per_unit: int, low: int, high: int) -> int:
    return max(low, min(high, round(value * steps_per_unit)))
