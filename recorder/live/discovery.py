"""What the MQTT publisher puts on the broker: topics, Home Assistant discovery configs, states.

Pure functions of the live view (no paho, no IO); `recorder.live.mqtt` decides when to send.

Topics (`base` = `--mqtt-topic`, default `tigo`; `prefix` = `--mqtt-discovery-prefix`, default
`homeassistant`), all retained:

    <base>/status                         online / offline: the recorder itself (its MQTT will)
    <base>/<barcode>/state                the optimizer's latest reading, JSON (`optimizer_state`)
    <base>/<barcode>/availability         online / offline: offline after --stale-after without
                                          a report, or once the barcode left the node (replaced)
    <base>/array/state                    {"power": W, "reporting": n}: every optimizer
    <base>/gateway/<gateway ID>/state     the same for one TAP
    <base>/string/<slug>/state            the same for one string (`recorder nodes label --string`)
    <prefix>/sensor/<unique_id>/config    one discovery config per entity

Discovery is per entity (`<prefix>/sensor/.../config`), the form every Home Assistant version
reads. Devices: one per optimizer (identifiers = its barcode; name = its label, else the barcode;
`via_device` = its gateway), one per gateway, one per string, and one for the array (the
recorder), which gateways and strings hang from. Entity `unique_id`s: `tigo_<barcode>_<field>`
for optimizers; `<id base>_array_power`, `<id base>_gateway_4609_power`,
`<id base>_string_<slug>_power` for totals, where the id base is the topic base made safe
(`tigo` by default), so two recorders with different topics do not collide. Entity names are
short ("Power"): Home Assistant prefixes the device name (entity ids like
`sensor.4_c286ccz_power`, or `sensor.east_3_power` for an optimizer labelled "east 3").

Optimizer entities are available when both `<base>/status` and the optimizer's availability say
`online` (`availability_mode: all`); "Last report" only follows the recorder's status, so the
time of the last report stays visible while the optimizer sleeps. Totals follow the
recorder's status and are sums over fresh readings (`fresh_total`, the rule the status page uses).

The state JSON keeps the recorder's units, as InfluxDB has them (`duty_cycle` 0-1, `rssi` raw,
`current_out` null at duty cycle 0); the discovery templates convert for Home Assistant
(duty cycle in %; a null becomes "unknown").

Adding a per-optimizer value is one `OPTIMIZER_FIELDS` entry: its key in the state JSON (and in
the unique_id), its entity name, how to read it from an `OptimizerNow`, and its unit and
classes.

Energy today (`energy_today`, Wh, `device_class` energy, `state_class` total_increasing) is the
energy recorder's own running total (`EnergyKeeper.today`, the same sums its `tigo_energy`
points carry), for the local day (`--timezone`) its integration has reached: it trails the
readings by the reorder window (5 min), and starts again from 0 when integration passes local
midnight (Home Assistant reads the drop as a new cycle of a `total_increasing` sensor). The
optimizer's value sums its series of the day (by long address); the totals' values sum every
series of the array or gateway (readings without a barcode included) and, for a string, every
optimizer labelled with it (one replaced during the day too), so no total goes down during the
day. The entity stays available while the optimizer sleeps (`while_reporting=False`), and a
state is published again when its energy changes, not only with a new reading, so the evening's
last minutes and the midnight reset reach the broker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from recorder.live.latest import RESOLVED, OptimizerNow, fresh_total

if TYPE_CHECKING:
    from recorder.energy import EnergyToday
    from recorder.storage.state import Labels

ONLINE = "online"
OFFLINE = "offline"
MANUFACTURER = "Tigo"

Source = TypeVar("Source")


@dataclass(frozen=True, slots=True)
class Field(Generic[Source]):
    """One value in a state JSON and the Home Assistant sensor that shows it."""

    key: str  # in the state JSON, and the unique_id's last part
    name: str  # the entity's name (Home Assistant puts the device name before it)
    value: Callable[[Source], float | int | str | None]
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = "measurement"
    precision: int | None = None  # suggested display precision
    template: str | None = None  # default: the key's value as it is
    diagnostic: bool = False  # shown under "Diagnostic" on the device page
    while_reporting: bool = True  # False: available whenever the recorder is (not only while fresh)

    @property
    def value_template(self) -> str:
        return self.template or f"{{{{ value_json.{self.key} }}}}"


@dataclass(frozen=True, slots=True)
class GroupTotals:
    """A total over a group of optimizers (array, gateway, string)."""

    power: float
    reporting: int
    energy_today: float | None = None  # Wh so far on the local day (None: no energy figures)


def _rounded(digits: int, read: Callable[[Source], float | None]) -> Callable[[Source], float | None]:
    def value(source: Source) -> float | None:
        number = read(source)
        return None if number is None else round(number, digits)

    return value


ENERGY_DIGITS = 2  # Wh; rounding keeps a total that only goes up from ever going down


def energy_value(energy: float | None) -> float | None:
    """`energy_today` as the state JSON carries it."""
    return None if energy is None else round(energy, ENERGY_DIGITS)


def _energy_field(read: Callable[[Source], float | None]) -> Field[Source]:
    return Field(
        "energy_today",
        "Energy today",
        lambda source: energy_value(read(source)),
        "Wh",
        "energy",
        state_class="total_increasing",
        precision=0,
        while_reporting=False,  # the day's total stays visible at night
    )


# Units as InfluxDB has them; device and state classes as Home Assistant's sensor integration
# defines them. RSSI is raw (no dBm scale), so it has no `signal_strength` class and no unit.
OPTIMIZER_FIELDS: tuple[Field[OptimizerNow], ...] = (
    # power: 50 mV × 5 mA steps, so five decimals hold it exactly
    Field("power", "Power", _rounded(5, lambda o: o.reading.power), "W", "power", precision=1),
    Field(
        "voltage_in",
        "Input voltage",
        _rounded(2, lambda o: o.reading.voltage_in),
        "V",
        "voltage",
        precision=2,
    ),
    Field(
        "voltage_out",
        "Output voltage",
        _rounded(2, lambda o: o.reading.voltage_out),
        "V",
        "voltage",
        precision=1,
    ),
    Field(
        "current_in",
        "Input current",
        _rounded(3, lambda o: o.reading.current_in),
        "A",
        "current",
        precision=3,
    ),
    Field(
        "current_out",
        "Output current",
        _rounded(3, lambda o: o.reading.current_out),
        "A",
        "current",
        precision=3,
    ),
    Field(
        "temperature",
        "Temperature",
        _rounded(1, lambda o: o.reading.temperature),
        "°C",
        "temperature",
        precision=1,
    ),
    Field(
        "duty_cycle",
        "Duty cycle",
        _rounded(6, lambda o: o.reading.duty_cycle),  # 1/255 steps; 6 decimals keep a % to 0.0001
        "%",
        precision=0,
        template="{{ (value_json.duty_cycle * 100) | round(1) }}",
    ),
    Field("rssi", "RSSI", lambda o: o.reading.rssi, diagnostic=True),
    _energy_field(lambda o: o.energy_today),
    Field(
        "measured_at",
        "Last report",
        lambda o: o.reading.measured_at.isoformat(timespec="milliseconds"),
        device_class="timestamp",
        state_class=None,
        diagnostic=True,
        while_reporting=False,
    ),
)

GROUP_FIELDS: tuple[Field[GroupTotals], ...] = (
    Field("power", "Power", lambda t: round(t.power, 1), "W", "power", precision=0),
    Field("reporting", "Optimizers reporting", lambda t: t.reporting),
    _energy_field(lambda t: t.energy_today),
)


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic the publisher uses, from `--mqtt-topic` and `--mqtt-discovery-prefix`."""

    base: str
    prefix: str

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def home_assistant_status(self) -> str:
        return f"{self.prefix}/status"

    @property
    def availability_filter(self) -> str:
        return f"{self.base}/+/availability"

    @property
    def id_base(self) -> str:
        return slug(self.base)

    def state(self, barcode: str) -> str:
        return f"{self.base}/{barcode}/state"

    def availability(self, barcode: str) -> str:
        return f"{self.base}/{barcode}/availability"

    def barcode_of_availability(self, topic: str) -> str | None:
        """The barcode in `<base>/<barcode>/availability`, else None."""
        head, _, rest = topic.partition(f"{self.base}/")
        if head or not rest.endswith("/availability"):
            return None
        barcode = rest.removesuffix("/availability")
        return barcode if barcode and "/" not in barcode else None

    def config(self, unique_id: str) -> str:
        return f"{self.prefix}/sensor/{unique_id}/config"


def slug(text: str) -> str:
    """Lower case, runs of anything but letters and digits as one `_` (safe in ids and topics)."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "_"


@dataclass(frozen=True, slots=True)
class Group:
    """A device holding totals: the array, a gateway or a string."""

    kind: str  # "array", "gateway" or "string"
    key: str  # "" for the array, the gateway ID, the string's slug
    name: str

    @property
    def path(self) -> str:
        return self.kind if self.kind == "array" else f"{self.kind}/{self.key}"

    def identifier(self, topics: Topics) -> str:
        return f"{topics.id_base}_{self.path.replace('/', '_')}"


def array_group() -> Group:
    return Group("array", "", "Tigo array")


def gateway_group(gateway_id: int) -> Group:
    return Group("gateway", str(gateway_id), f"Tigo TAP {gateway_id}")


def string_group(name: str) -> Group:
    return Group("string", slug(name), f"String {name}")


def publishable(optimizers: Iterable[OptimizerNow]) -> list[OptimizerNow]:
    """The optimizers Home Assistant sees: those with a barcode (no entity that becomes an orphan)."""
    return [o for o in optimizers if o.identity == RESOLVED and o.reading.barcode]


def group_totals(
    optimizers: list[OptimizerNow],
    energy: EnergyToday | None = None,
    labels: Mapping[bytes, Labels] | None = None,
) -> dict[Group, GroupTotals]:
    """Totals for the array, each gateway and each labelled string: power over every optimizer
    in the view (one without a barcode yet still produces power), energy today over every
    series of the day (see the module docstring; `labels` name a string's optimizers)."""
    members: dict[Group, list[OptimizerNow]] = {array_group(): optimizers}
    for optimizer in optimizers:
        members.setdefault(gateway_group(optimizer.reading.gateway_id), []).append(optimizer)
        if optimizer.string:
            members.setdefault(string_group(optimizer.string), []).append(optimizer)
    totals = {}
    for group, its in members.items():
        power, reporting = fresh_total(its)
        energy_today = None
        if energy is not None:
            if group.kind == "array":
                energy_today = energy.total
            elif group.kind == "gateway":
                energy_today = energy.by_gateway.get(int(group.key), 0.0)
            else:
                energy_today = energy.of_addresses(
                    address
                    for address, own in (labels or {}).items()
                    if own.string and slug(own.string) == group.key
                )
        totals[group] = GroupTotals(power, reporting, energy_today)
    return totals


def optimizer_device(barcode: str, name: str | None, gateway_id: int, topics: Topics) -> dict[str, Any]:
    return {
        "identifiers": [barcode],
        "name": name or barcode,
        "manufacturer": MANUFACTURER,
        "model": "TS4 optimizer",
        "via_device": gateway_group(gateway_id).identifier(topics),
    }


def group_device(group: Group, topics: Topics, version: str) -> dict[str, Any]:
    device: dict[str, Any] = {
        "identifiers": [group.identifier(topics)],
        "name": group.name,
        "manufacturer": MANUFACTURER,
    }
    if group.kind == "array":
        device.update(model="Array (recorder)", sw_version=version)
    else:
        device.update(model="TAP" if group.kind == "gateway" else "String")
        device["via_device"] = array_group().identifier(topics)
    return device


def optimizer_configs(
    optimizer: OptimizerNow, topics: Topics, version: str
) -> list[tuple[str, dict[str, Any]]]:
    """(topic, config) for every entity of one optimizer with a barcode."""
    barcode = optimizer.reading.barcode
    assert barcode, "only optimizers with a barcode are published"
    device = optimizer_device(barcode, optimizer.name, optimizer.reading.gateway_id, topics)
    configs = []
    for field in OPTIMIZER_FIELDS:
        unique_id = f"tigo_{barcode}_{field.key}"
        availability = (
            [topics.status, topics.availability(barcode)] if field.while_reporting else [topics.status]
        )
        configs.append(
            (
                topics.config(unique_id),
                _config(field, unique_id, topics.state(barcode), availability, device, version),
            )
        )
    return configs


def group_configs(group: Group, topics: Topics, version: str) -> list[tuple[str, dict[str, Any]]]:
    device = group_device(group, topics, version)
    configs = []
    for field in GROUP_FIELDS:
        unique_id = f"{group.identifier(topics)}_{field.key}"
        state_topic = f"{topics.base}/{group.path}/state"
        configs.append(
            (
                topics.config(unique_id),
                _config(field, unique_id, state_topic, [topics.status], device, version),
            )
        )
    return configs


def group_state_topic(group: Group, topics: Topics) -> str:
    return f"{topics.base}/{group.path}/state"


def _config(
    field: Field[Any],
    unique_id: str,
    state_topic: str,
    availability: list[str],
    device: dict[str, Any],
    version: str,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": field.name,
        "unique_id": unique_id,
        "state_topic": state_topic,
        "value_template": field.value_template,
        "availability": [{"topic": topic} for topic in availability],
        "availability_mode": "all",
        "device": device,
        "origin": {"name": "recorder", "sw_version": version},
    }
    if field.unit is not None:
        config["unit_of_measurement"] = field.unit
    if field.device_class is not None:
        config["device_class"] = field.device_class
    if field.state_class is not None:
        config["state_class"] = field.state_class
    if field.precision is not None:
        config["suggested_display_precision"] = field.precision
    if field.diagnostic:
        config["entity_category"] = "diagnostic"
    return config


def optimizer_state(optimizer: OptimizerNow) -> dict[str, Any]:
    return {field.key: field.value(optimizer) for field in OPTIMIZER_FIELDS}


def group_state(totals: GroupTotals) -> dict[str, Any]:
    return {field.key: field.value(totals) for field in GROUP_FIELDS}


def encode(document: dict[str, Any]) -> bytes:
    """Compact JSON, UTF-8 (`°C` as itself)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
