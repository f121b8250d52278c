"""PV application layer: decoding and encoding the bodies of PV packets.

Theory of operation
-------------------
Consumes: the transport's events: the packets nodes sent (`PacketsReceived`, one per receive
response) and the packets the controller exchanged with a gateway (`CommandExchanged`). Emits:
the events in `recorder.protocol.events`, in the order their packets came, and passes the
transport's own events through. Reference: "PV application layer", corrected by NOTES.md 1, 3,
5, 6.

Packet types we understand:

    06/07  string request / response     09  topology report
    0D/0E  gateway radio configuration   13/18  PV configuration request / response
    22/23  broadcast / acknowledgement   26/27  node table request / response
    2D/2E/2F  network status             31  power report

Anything else (0x41 for example) is passed on raw as `UnknownPacketReceived`.

Layouts:

* Power report (31), at least 13 bytes; firmware 4.x appends 1-2 bytes we keep as `tail`:
  `Vin:12 Vout:12 | duty 1 B | Iin:12 temp:12 | ? 3 B | slot counter 2 B | RSSI 1 B`.
  Temperature is 12-bit two's complement (0xFFF = -0.1 °C). A report shorter than 13 bytes, or
  whose slot number (the counter's low 14 bits) is 12000 or more, cannot be a real measurement:
  it is counted (`invalid_power_reports`) and dropped. `power_report_received` is the one place
  this layout is read; everything else (`decode_power_report` too) calls it.
* Topology report (09): `short 2 | node ID 2 | next hop 2 | ? 2 | long address 8 | RSSI 1 | ?`.
* Node table request (26): `start index 2`. Response (27): `start index 2 | count 2 | count ×
  (long address 8 | node ID 2)`; the page may start later than requested, count 0 ends the table.
* Network status response (2F): `? 1 | counter 2 | node count 2 ×3`, sometimes preceded by the
  gateway's node ID `00 01` (two forms appear in the reference); we decode from the end.
* Gateway radio configuration response (0E): `? 1 | channel 1 | PAN ID 2 | ...` (the AES key that
  follows is never copied into an event).
* PV configuration request (13): `node ID 2 | ? 2 | report type 1 | ? 1 | period 2 | phase 2 | ?`.
  Response (18): `? 1 | PAN ID 2 | channel 1 | ? 2 | (5 B repeat) | ? 8 | report type 1 |
  period 2 | phase 2 | ? 6 | (19 B repeat)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from recorder.counters import Counters
from recorder.protocol.events import (
    BroadcastSent,
    CommandExchanged,
    Event,
    GatewayRadioConfiguration,
    NetworkStatus,
    NodeTableEntry,
    NodeTablePage,
    PowerReport,
    PowerReportFields,
    PowerReportReceived,
    PvConfigurationReceived,
    PvConfigurationRequested,
    StringRequestSent,
    StringResponseReceived,
    TopologyReport,
    TopologyReportReceived,
    TransportEvent,
    UnknownPacketReceived,
)
from recorder.protocol.pv.network import HEADER_BYTES
from recorder.protocol.slots import SLOTS_PER_EPOCH

STRING_REQUEST = 0x06
STRING_RESPONSE = 0x07
TOPOLOGY_REPORT = 0x09
RADIO_CONFIGURATION_REQUEST = 0x0D
RADIO_CONFIGURATION_RESPONSE = 0x0E
PV_CONFIGURATION_REQUEST = 0x13
PV_CONFIGURATION_RESPONSE = 0x18
BROADCAST = 0x22
BROADCAST_ACK = 0x23
NODE_TABLE_REQUEST = 0x26
NODE_TABLE_RESPONSE = 0x27
LONG_NETWORK_STATUS_REQUEST = 0x2D
NETWORK_STATUS_REQUEST = 0x2E
NETWORK_STATUS_RESPONSE = 0x2F
POWER_REPORT = 0x31

PACKET_TYPE_NAMES = {
    STRING_REQUEST: "string request",
    STRING_RESPONSE: "string response",
    TOPOLOGY_REPORT: "topology report",
    RADIO_CONFIGURATION_REQUEST: "radio configuration request",
    RADIO_CONFIGURATION_RESPONSE: "radio configuration response",
    PV_CONFIGURATION_REQUEST: "PV configuration request",
    PV_CONFIGURATION_RESPONSE: "PV configuration response",
    BROADCAST: "broadcast",
    BROADCAST_ACK: "broadcast ack",
    NODE_TABLE_REQUEST: "node table request",
    NODE_TABLE_RESPONSE: "node table response",
    LONG_NETWORK_STATUS_REQUEST: "long network status request",
    NETWORK_STATUS_REQUEST: "network status request",
    NETWORK_STATUS_RESPONSE: "network status response",
    POWER_REPORT: "power report",
}

POWER_REPORT_BYTES = 13
TOPOLOGY_REPORT_BYTES = 17  # the fields we decode; real reports carry 6 more unknown bytes
NODE_TABLE_ENTRY_BYTES = 10


def packet_type_name(packet_type: int) -> str:
    return PACKET_TYPE_NAMES.get(packet_type, f"unknown 0x{packet_type:02X}")


# --------------------------------------------------------------------------------------------
# Value decoders and encoders


def power_report_received(
    gateway_id: int,
    node_id: int,
    received_at: datetime,
    gateway_slot_counter: int,
    data: bytes,
    at: int = 0,
) -> PowerReportReceived | None:
    """The event for a power report whose bytes start at `data[at]` (read in place: the packet's
    data inside the frame body); None if it is too short or its slot counter is impossible."""
    if len(data) - at < POWER_REPORT_BYTES:
        return None
    slot_counter = (data[at + 10] << 8) | data[at + 11]
    if (slot_counter & 0x3FFF) >= SLOTS_PER_EPOCH:  # impossible slot number
        return None
    temperature = ((data[at + 5] & 0x0F) << 8) | data[at + 6]
    if temperature & 0x800:  # 12-bit two's complement
        temperature -= 0x1000
    return (
        gateway_id,
        node_id,
        received_at,
        gateway_slot_counter,
        slot_counter,
        (data[at] << 4) | (data[at + 1] >> 4),  # Vin
        ((data[at + 1] & 0x0F) << 8) | data[at + 2],  # Vout
        data[at + 3],  # duty cycle
        (data[at + 4] << 4) | (data[at + 5] >> 4),  # Iin
        temperature,
        data[at + 12],  # RSSI
    )


_NO_TIME = datetime.min


def decode_power_report(data: bytes) -> PowerReport | None:
    """A power report's values with the bytes we do not understand (for diagnostics, tests and
    the simulator); None if too short or if the slot counter is impossible."""
    event = power_report_received(0, 0, _NO_TIME, 0, data)
    if event is None:
        return None
    return PowerReportFields._make(event).report._replace(unknown=data[7:10], tail=data[13:])


def _pack_u12_pair(first: int, second: int) -> bytes:
    if not (0 <= first < 0x1000 and 0 <= second < 0x1000):
        raise ValueError(f"12-bit fields out of range: {first}, {second}")
    return bytes((first >> 4, ((first & 0x0F) << 4) | (second >> 8), second & 0xFF))


def encode_power_report(report: PowerReport) -> bytes:
    if not -0x800 <= report.temperature_raw < 0x800:
        raise ValueError(f"temperature out of 12-bit range: {report.temperature_raw}")
    if len(report.unknown) != 3:
        raise ValueError("power report unknown field must be 3 bytes")
    return (
        _pack_u12_pair(report.voltage_in_raw, report.voltage_out_raw)
        + bytes((report.duty_cycle_raw,))
        + _pack_u12_pair(report.current_in_raw, report.temperature_raw & 0xFFF)
        + report.unknown
        + report.slot_counter.to_bytes(2, "big")
        + bytes((report.rssi,))
        + report.tail
    )


def decode_topology_report(data: bytes) -> TopologyReport | None:
    if len(data) < TOPOLOGY_REPORT_BYTES:
        return None
    return TopologyReport(
        short_address=(data[0] << 8) | data[1],
        node_id=(data[2] << 8) | data[3],
        next_hop=(data[4] << 8) | data[5],
        unknown=data[6:8],
        long_address=data[8:16],
        rssi=data[16],
        tail=data[17:],
    )


def encode_topology_report(report: TopologyReport) -> bytes:
    return (
        report.short_address.to_bytes(2, "big")
        + report.node_id.to_bytes(2, "big")
        + report.next_hop.to_bytes(2, "big")
        + report.unknown
        + report.long_address
        + bytes((report.rssi,))
        + report.tail
    )


def encode_node_table_request(start_index: int) -> bytes:
    return start_index.to_bytes(2, "big")


def decode_node_table_response(data: bytes) -> tuple[int, tuple[NodeTableEntry, ...]] | None:
    """(start index, entries), or None if the length does not match the declared count."""
    if len(data) < 4:
        return None
    start_index = (data[0] << 8) | data[1]
    count = (data[2] << 8) | data[3]
    if len(data) != 4 + count * NODE_TABLE_ENTRY_BYTES:
        return None
    entries = tuple(
        NodeTableEntry(
            long_address=data[offset : offset + 8],
            node_id=(data[offset + 8] << 8) | data[offset + 9],
        )
        for offset in range(4, len(data), NODE_TABLE_ENTRY_BYTES)
    )
    return start_index, entries


def encode_node_table_response(
    start_index: int, entries: tuple[NodeTableEntry, ...] | list[NodeTableEntry]
) -> bytes:
    body = start_index.to_bytes(2, "big") + len(entries).to_bytes(2, "big")
    for entry in entries:
        body += entry.long_address + entry.node_id.to_bytes(2, "big")
    return body


def encode_string_request(node_id: int, text: str) -> bytes:
    return node_id.to_bytes(2, "big") + text.encode("ascii")


def encode_network_status_response(
    unknown: int, counter: int, counts: tuple[int, int, int], *, with_node_id: bool = False
) -> bytes:
    prefix = b"\x00\x01" if with_node_id else b""
    return (
        prefix
        + bytes((unknown,))
        + counter.to_bytes(2, "big")
        + b"".join(c.to_bytes(2, "big") for c in counts)
    )


def decode_network_status_response(data: bytes) -> tuple[int, int, tuple[int, int, int]] | None:
    if len(data) < 9:
        return None
    tail = data[-9:]
    return (
        tail[0],
        (tail[1] << 8) | tail[2],
        ((tail[3] << 8) | tail[4], (tail[5] << 8) | tail[6], (tail[7] << 8) | tail[8]),
    )


def encode_radio_configuration_response(channel: int, pan_id: int, rest: bytes) -> bytes:
    return b"\x00" + bytes((channel,)) + pan_id.to_bytes(2, "big") + rest


def encode_pv_configuration_request(
    node_id: int, report_type: int, period: int, phase: int, rest: bytes
) -> bytes:
    return (
        node_id.to_bytes(2, "big")
        + b"\x03\x00"
        + bytes((report_type, 0x02))
        + period.to_bytes(2, "big")
        + phase.to_bytes(2, "big")
        + rest
    )


def encode_pv_configuration_response(
    pan_id: int, channel: int, report_type: int, period: int, phase: int
) -> bytes:
    radio = pan_id.to_bytes(2, "big") + bytes((channel, 0x6C, 0x00))
    report = (
        b"\x03\x00\x30\x00\x00\x00\x00\x00"
        + bytes((report_type,))
        + period.to_bytes(2, "big")
        + phase.to_bytes(2, "big")
        + b"\x00\x09\x00\x00\x00\x00"
    )
    return b"\x0f" + radio + radio + report + report


# --------------------------------------------------------------------------------------------
# Dispatch from the transport layer


@dataclass(slots=True)
class ApplicationCounters(Counters):
    """What the PV application layer decoded or rejected."""

    power_reports: int = 0
    invalid_power_reports: int = 0
    topology_reports: int = 0
    invalid_topology_reports: int = 0
    node_table_pages: int = 0
    invalid_node_table_responses: int = 0
    string_requests: int = 0
    string_responses: int = 0
    network_status_responses: int = 0
    unknown_packet_types: int = 0


class ApplicationDecoder:
    """Turns PV packets (received, or exchanged as commands) into events, with counters."""

    def __init__(self) -> None:
        self.counters = ApplicationCounters()

    def feed(self, events: list[TransportEvent]) -> list[Event]:
        """Decode the transport's packet events; its other events pass through, all in order."""
        out: list[Event] = []
        append = out.append
        reports = invalid = 0
        for event in events:
            if type(event) is tuple:  # PacketsReceived: the packets of one receive response
                gateway_id, gateway_slot_counter, received_at, packets = event
                for packet_type, node_id, packet in packets:
                    if packet_type == POWER_REPORT:
                        report = power_report_received(
                            gateway_id, node_id, received_at, gateway_slot_counter, packet, HEADER_BYTES
                        )
                        if report is None:
                            invalid += 1
                        else:
                            reports += 1
                            append(report)
                    else:
                        self.received(
                            gateway_id, packet_type, node_id, packet[HEADER_BYTES:], received_at, out
                        )
            elif isinstance(event, CommandExchanged):
                self.exchanged(event, out)
            else:
                append(event)  # type: ignore[arg-type]  # the transport's own events
        self.counters.power_reports += reports
        self.counters.invalid_power_reports += invalid
        return out

    def received(
        self,
        gateway_id: int,
        packet_type: int,
        node_id: int,
        data: bytes,
        received_at: datetime,
        out: list[Event],
    ) -> None:
        """A packet other than a power report that a node sent, delivered in a receive response."""
        counters = self.counters
        if packet_type == TOPOLOGY_REPORT:
            topology = decode_topology_report(data)
            if topology is None:
                counters.invalid_topology_reports += 1
                return
            counters.topology_reports += 1
            out.append(TopologyReportReceived(gateway_id, node_id, received_at, topology))
        elif packet_type == STRING_RESPONSE:
            counters.string_responses += 1
            out.append(StringResponseReceived(gateway_id, node_id, _text(data), received_at))
        elif packet_type == PV_CONFIGURATION_RESPONSE:
            out.append(_pv_configuration_response(gateway_id, node_id, data, received_at))
        else:
            counters.unknown_packet_types += 1
            out.append(UnknownPacketReceived(gateway_id, node_id, packet_type, data, received_at))

    def exchanged(self, exchange: CommandExchanged, out: list[Event]) -> None:
        """A command the controller sent through the gateway and the gateway's answer.

        `request_type`/`request_data` are None when the request frame was not seen (noise).
        """
        counters = self.counters
        gateway_id, request_type, request_data = (
            exchange.gateway_id,
            exchange.request_type,
            exchange.request_data,
        )
        response_type, response_data = exchange.response_type, exchange.response_data
        received_at = exchange.received_at
        if response_type == NODE_TABLE_RESPONSE:
            decoded = decode_node_table_response(response_data)
            if decoded is None:
                counters.invalid_node_table_responses += 1
                return
            requested = None
            if request_type == NODE_TABLE_REQUEST and request_data is not None and len(request_data) >= 2:
                requested = (request_data[0] << 8) | request_data[1]
            counters.node_table_pages += 1
            out.append(NodeTablePage(gateway_id, requested, decoded[0], decoded[1], received_at))
            return
        if response_type == NETWORK_STATUS_RESPONSE:
            status = decode_network_status_response(response_data)
            if status is not None:
                counters.network_status_responses += 1
                out.append(NetworkStatus(gateway_id, status[0], status[1], status[2], received_at))
            return
        if response_type == RADIO_CONFIGURATION_RESPONSE and len(response_data) >= 4:
            pan_id = (response_data[2] << 8) | response_data[3]
            out.append(GatewayRadioConfiguration(gateway_id, response_data[1], pan_id, received_at))
            return
        if request_type is None or request_data is None:
            return
        if request_type == STRING_REQUEST and len(request_data) >= 2:
            counters.string_requests += 1
            node_id = (request_data[0] << 8) | request_data[1]
            out.append(StringRequestSent(gateway_id, node_id, _text(request_data[2:]), received_at))
        elif request_type == PV_CONFIGURATION_REQUEST and len(request_data) >= 10:
            out.append(
                PvConfigurationRequested(
                    gateway_id,
                    (request_data[0] << 8) | request_data[1],
                    request_data[4],
                    (request_data[6] << 8) | request_data[7],
                    (request_data[8] << 8) | request_data[9],
                    received_at,
                )
            )
        elif request_type == BROADCAST:
            # `00 01` = PV off asserted, `00 00` = released, empty = keep-alive. With four or
            # more bytes the first two are taken as the destination node.
            node_id = (request_data[0] << 8) | request_data[1] if len(request_data) >= 4 else 0
            pv_off = bool(request_data[-1] & 1) if request_data else None
            out.append(BroadcastSent(gateway_id, node_id, pv_off, received_at))
        elif request_type not in PACKET_TYPE_NAMES:
            counters.unknown_packet_types += 1
            out.append(UnknownPacketReceived(gateway_id, None, request_type, request_data, received_at))


def _text(data: bytes) -> str:
    return data.decode("ascii", errors="replace")


def _pv_configuration_response(
    gateway_id: int, node_id: int, data: bytes, received_at: datetime
) -> PvConfigurationReceived:
    pan_id = (data[1] << 8) | data[2] if len(data) >= 3 else 0
    channel = data[3] if len(data) >= 4 else 0
    if len(data) >= 24:
        return PvConfigurationReceived(
            gateway_id,
            node_id,
            pan_id,
            channel,
            data[19],
            (data[20] << 8) | data[21],
            (data[22] << 8) | data[23],
            received_at,
        )
    return PvConfigurationReceived(gateway_id, node_id, pan_id, channel, None, None, None, received_at)
