"""Everything the protocol stack can tell its caller.

Values decoded from PV packets (`PowerReport`, `TopologyReport`, ...) keep the raw integers from
the wire and expose engineering units as properties (`recorder.protocol.units`), so encoders and
decoders round-trip exactly and unit conversions live in one place.

Events always carry the gateway they came through and `received_at`, the receive timestamp of
the frame that completed them (given to `Stack.feed`, never read from a clock).

Most events are frozen dataclasses. The two that come once per power report are plain tuples
with a documented field order, `PacketsReceived` (the transport's fresh packets of one receive
response) and `PowerReportReceived` (one valid power report): a backfill builds millions of
them, and a tuple costs a tenth of a frozen dataclass (measured: 60 ns against 400-650 ns for
a dataclass or NamedTuple of a dozen fields). They are just as immutable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from recorder.protocol import units
from recorder.protocol.barcode import barcode_from_address
from recorder.protocol.pv.network import ReceivedPacket

# --------------------------------------------------------------------------------------------
# PV application values


class PowerReport(NamedTuple):
    """PV packet 0x31: one optimizer measurement. Raw wire integers; units via properties.

    A NamedTuple rather than a frozen dataclass only because it is built for every report on
    the decoder's hot path and is several times cheaper to construct; it is just as immutable.
    """

    voltage_in_raw: int  # 12 bits, 50 mV steps
    voltage_out_raw: int  # 12 bits, 100 mV steps
    duty_cycle_raw: int  # 8 bits, 255 = 100 %
    current_in_raw: int  # 12 bits, 5 mA steps; the optimizer's *input* current (NOTES 5)
    temperature_raw: int  # 12-bit two's complement already sign-extended, 0.1 °C steps
    unknown: bytes  # 3 bytes of unknown meaning, kept verbatim
    slot_counter: int  # gateway slot counter when the measurement was taken
    rssi: int  # raw byte; its dBm scale is unknown for newer radios (NOTES 8)
    tail: bytes = b""  # bytes beyond the 13 we understand (firmware 4.x sends 1-2 more)

    @property
    def voltage_in(self) -> float:
        return units.voltage_in(self.voltage_in_raw)

    @property
    def voltage_out(self) -> float:
        return units.voltage_out(self.voltage_out_raw)

    @property
    def duty_cycle(self) -> float:
        return units.duty_cycle(self.duty_cycle_raw)

    @property
    def current_in(self) -> float:
        return units.current_in(self.current_in_raw)

    @property
    def temperature(self) -> float:
        return units.temperature(self.temperature_raw)

    @property
    def power(self) -> float:
        return units.power(self.voltage_in_raw, self.current_in_raw)

    @property
    def current_out(self) -> float | None:
        return units.current_out(self.current_in_raw, self.duty_cycle_raw)


@dataclass(frozen=True, slots=True)
class TopologyReport:
    """PV packet 0x09: a node announcing itself and its route to the gateway."""

    short_address: int
    node_id: int
    next_hop: int
    unknown: bytes  # 2 bytes
    long_address: bytes  # 8 bytes
    rssi: int
    tail: bytes  # the remaining bytes of unknown meaning

    @property
    def barcode(self) -> str | None:
        return barcode_from_address(self.long_address)


@dataclass(frozen=True, slots=True)
class NodeTableEntry:
    long_address: bytes
    node_id: int

    @property
    def barcode(self) -> str | None:
        return barcode_from_address(self.long_address)


# --------------------------------------------------------------------------------------------
# Events


# One valid power report (PV packet 0x31) a node sent, as a plain tuple (see the module
# docstring), fields in this order:
#   gateway_id, node_id, received_at,
#   gateway_slot_counter   the counter in the receive response that carried the report
#   slot_counter           the report's own: when the measurement was taken
#   voltage_in_raw, voltage_out_raw, duty_cycle_raw, current_in_raw, temperature_raw, rssi
#                          the raw wire integers of `PowerReport`, in `recorder.protocol.units`
#                          (temperature already sign-extended)
PowerReportReceived = tuple[int, int, datetime, int, int, int, int, int, int, int, int]


class PowerReportFields(NamedTuple):
    """A `PowerReportReceived` with named fields (`PowerReportFields._make(event)`), for code off
    the hot path (diagnostics, tests)."""

    gateway_id: int
    node_id: int
    received_at: datetime
    gateway_slot_counter: int
    slot_counter: int
    voltage_in_raw: int
    voltage_out_raw: int
    duty_cycle_raw: int
    current_in_raw: int
    temperature_raw: int
    rssi: int

    @property
    def report(self) -> PowerReport:
        """The values with their units (the bytes we do not understand are not kept)."""
        return PowerReport(
            voltage_in_raw=self.voltage_in_raw,
            voltage_out_raw=self.voltage_out_raw,
            duty_cycle_raw=self.duty_cycle_raw,
            current_in_raw=self.current_in_raw,
            temperature_raw=self.temperature_raw,
            unknown=b"\x00\x00\x00",
            slot_counter=self.slot_counter,
            rssi=self.rssi,
        )


# The transport's packets of one receive response that were not retransmissions, as a plain
# tuple: (gateway_id, gateway slot counter, received_at, packets). The PV application layer
# turns them into events; the slot counter is passed on for placing power reports.
PacketsReceived = tuple[int, int, datetime, list[ReceivedPacket]]


@dataclass(frozen=True, slots=True)
class CommandExchanged:
    """A PV packet the controller sent through a gateway (frame 0x0B0F) and the gateway's answer
    (0x0B10), paired by the transport; `request_*` are None when the request was not seen. The PV
    application layer decodes it."""

    gateway_id: int
    request_type: int | None
    request_data: bytes | None
    response_type: int
    response_data: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class TopologyReportReceived:
    gateway_id: int
    node_id: int  # from the packet header
    received_at: datetime
    report: TopologyReport


@dataclass(frozen=True, slots=True)
class NodeTablePage:
    """One node table response (PV 0x27) paired with the request (PV 0x26) that asked for it."""

    gateway_id: int
    requested_index: int | None  # None when the request was not seen
    start_index: int
    entries: tuple[NodeTableEntry, ...]
    received_at: datetime

    @property
    def is_end(self) -> bool:
        return not self.entries


@dataclass(frozen=True, slots=True)
class StringRequestSent:
    gateway_id: int
    node_id: int
    text: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class StringResponseReceived:
    gateway_id: int
    node_id: int
    text: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class NetworkStatus:
    """PV 0x2F: the gateway's view of the mesh. The three counts usually agree."""

    gateway_id: int
    unknown: int
    counter: int
    node_counts: tuple[int, int, int]
    received_at: datetime


@dataclass(frozen=True, slots=True)
class GatewayRadioConfiguration:
    """PV 0x0E. The AES key it contains is deliberately not kept in the event."""

    gateway_id: int
    channel: int
    pan_id: int
    received_at: datetime


@dataclass(frozen=True, slots=True)
class PvConfigurationRequested:
    """PV 0x13: the controller assigns a node its report period and phase (in slots)."""

    gateway_id: int
    node_id: int
    report_type: int
    period_slots: int
    phase_slots: int
    received_at: datetime


@dataclass(frozen=True, slots=True)
class PvConfigurationReceived:
    """PV 0x18: a node echoes its radio and report configuration."""

    gateway_id: int
    node_id: int
    pan_id: int
    channel: int
    report_type: int | None
    period_slots: int | None
    phase_slots: int | None
    received_at: datetime


@dataclass(frozen=True, slots=True)
class BroadcastSent:
    """PV 0x22 to the broadcast node; `pv_off` is None for the empty keep-alive form."""

    gateway_id: int
    node_id: int
    pv_off: bool | None
    received_at: datetime


@dataclass(frozen=True, slots=True)
class UnknownPacketReceived:
    """A PV packet of a type we do not decode, kept raw (from a node, or a command exchange)."""

    gateway_id: int
    node_id: int | None
    packet_type: int
    data: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class GatewayIdentityObserved:
    """A gateway's long address (frame 0x0039 during enumeration, 0x003B identify)."""

    gateway_id: int
    long_address: bytes
    during_enumeration: bool
    received_at: datetime

    @property
    def barcode(self) -> str | None:
        return barcode_from_address(self.long_address)


@dataclass(frozen=True, slots=True)
class GatewayVersionObserved:
    gateway_id: int
    version: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class EnumerationStarted:
    enumeration_gateway_id: int
    received_at: datetime


@dataclass(frozen=True, slots=True)
class GatewayIdAssigned:
    """Frame 0x003C: the gateway with `long_address`, addressed at `gateway_id`, becomes `new_gateway_id`."""

    gateway_id: int
    long_address: bytes
    new_gateway_id: int
    received_at: datetime


@dataclass(frozen=True, slots=True)
class EnumerationEnded:
    gateway_id: int
    received_at: datetime


@dataclass(frozen=True, slots=True)
class FrameSeen:
    """Verbose mode only: a one-line description of any transport frame, for `peek activity`."""

    gateway_id: int
    from_gateway: bool
    frame_type: int
    name: str
    summary: str
    received_at: datetime


# What the transport hands the PV application layer.
TransportEvent = (
    PacketsReceived
    | CommandExchanged
    | GatewayIdentityObserved
    | GatewayVersionObserved
    | EnumerationStarted
    | GatewayIdAssigned
    | EnumerationEnded
    | FrameSeen
)

# What the stack returns.
Event = (
    PowerReportReceived
    | TopologyReportReceived
    | NodeTablePage
    | StringRequestSent
    | StringResponseReceived
    | NetworkStatus
    | GatewayRadioConfiguration
    | PvConfigurationRequested
    | PvConfigurationReceived
    | BroadcastSent
    | UnknownPacketReceived
    | GatewayIdentityObserved
    | GatewayVersionObserved
    | EnumerationStarted
    | GatewayIdAssigned
    | EnumerationEnded
    | FrameSeen
)
