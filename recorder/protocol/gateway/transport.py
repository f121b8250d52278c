"""Gateway transport layer: frames to PV packets, command exchanges and enumeration events.

Theory of operation
-------------------
Consumes: frame bodies from `link.LinkDecoder` with their receive times. Emits: gateway events
(identity, version, enumeration), and for the PV application layer the fresh packets of each
receive response (`PacketsReceived`) and paired command exchanges (`CommandExchanged`).
Reference: "Gateway transport layer", corrected by NOTES.md 2 and 18.

Frame types (request -> response):

    0148 -> 0149  receive: the controller polls a gateway for packets it heard from nodes
    0B0F -> 0B10  command: the controller sends a PV packet through the gateway
    0B00 -> 0B01  ping
    0014 -> 0015  enumeration start (broadcast, names a temporary enumeration ID)
    0038 -> 0039  enumeration (answer holds the gateway's long address)
    003C -> 003D  assign gateway ID
    003A -> 003B  identify (answer holds the long address)
    000A -> 000B  version (answer is a text)
    0E02 -> 0006  enumeration end
    0010 -> 0011  unknown, seen during enumeration

Receive response payload: a 16-bit status word whose bits 0-4, when *clear*, announce optional
fields: rx buffers used (1 B), tx buffers free (1 B), two unknown 2-byte fields, and the high
byte of the packet number. Then the packet number's low byte, the gateway slot counter (2 B) and
the packets. Only bits 0-4 decide the layout: controller firmware 4.x sets bit 8 and counts an
extended epoch in the top bits, and bits 5-7 vary by gateway firmware (NOTES 2); insisting on
`00 E0`-style words would drop every frame after a firmware update.

The packet number in the low-byte form is widened against the last full number we saw for that
gateway (its receive request, or an earlier response), choosing the nearest value. Only
diagnostics show it (`verbose`): nothing downstream depends on it (retransmissions are
recognised by their bytes), so the numbers are only tracked in verbose mode.

Retransmissions: when the controller misses a response it polls again with the same packet
number and the gateway sends the same packets again. We drop any packet byte-identical to one in
that gateway's previous packet-bearing response (`retransmitted_packets`). Power reports carry
their measurement slot, so two genuinely different reports are never byte-identical.

Commands are paired by (gateway, sequence number). A request is remembered until its response
arrives; a response with no outstanding request is a gateway retransmission if it repeats the
last completed exchange (`retransmitted_command_responses`), otherwise it is decoded on its own
(`unmatched_command_responses`: we missed the request).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from recorder.counters import Counters
from recorder.protocol.barcode import describe_address
from recorder.protocol.events import (
    CommandExchanged,
    EnumerationEnded,
    EnumerationStarted,
    FrameSeen,
    GatewayIdAssigned,
    GatewayIdentityObserved,
    GatewayVersionObserved,
    TransportEvent,
)
from recorder.protocol.pv.application import packet_type_name
from recorder.protocol.pv.network import ReceivedPacket, split_packets

RECEIVE_REQUEST = 0x0148
RECEIVE_RESPONSE = 0x0149
COMMAND_REQUEST = 0x0B0F
COMMAND_RESPONSE = 0x0B10
PING_REQUEST = 0x0B00
PING_RESPONSE = 0x0B01
ENUMERATION_START_REQUEST = 0x0014
ENUMERATION_START_RESPONSE = 0x0015
ENUMERATION_REQUEST = 0x0038
ENUMERATION_RESPONSE = 0x0039
ASSIGN_GATEWAY_ID_REQUEST = 0x003C
ASSIGN_GATEWAY_ID_RESPONSE = 0x003D
IDENTIFY_REQUEST = 0x003A
IDENTIFY_RESPONSE = 0x003B
VERSION_REQUEST = 0x000A
VERSION_RESPONSE = 0x000B
ENUMERATION_END_REQUEST = 0x0E02
ENUMERATION_END_RESPONSE = 0x0006
UNKNOWN_0010_REQUEST = 0x0010
UNKNOWN_0011_RESPONSE = 0x0011

FRAME_TYPE_NAMES = {
    RECEIVE_REQUEST: "receive request",
    RECEIVE_RESPONSE: "receive response",
    COMMAND_REQUEST: "command request",
    COMMAND_RESPONSE: "command response",
    PING_REQUEST: "ping request",
    PING_RESPONSE: "ping response",
    ENUMERATION_START_REQUEST: "enumeration start request",
    ENUMERATION_START_RESPONSE: "enumeration start response",
    ENUMERATION_REQUEST: "enumeration request",
    ENUMERATION_RESPONSE: "enumeration response",
    ASSIGN_GATEWAY_ID_REQUEST: "assign gateway ID request",
    ASSIGN_GATEWAY_ID_RESPONSE: "assign gateway ID response",
    IDENTIFY_REQUEST: "identify request",
    IDENTIFY_RESPONSE: "identify response",
    VERSION_REQUEST: "version request",
    VERSION_RESPONSE: "version response",
    ENUMERATION_END_REQUEST: "enumeration end request",
    ENUMERATION_END_RESPONSE: "enumeration end response",
    UNKNOWN_0010_REQUEST: "unknown 0010 request",
    UNKNOWN_0011_RESPONSE: "unknown 0011 response",
}

# Status word bit (clear = field present) -> size of the optional field it announces.
_OPTIONAL_FIELDS = ((0x01, 1), (0x02, 1), (0x04, 2), (0x08, 2), (0x10, 1))


def frame_type_name(frame_type: int) -> str:
    return FRAME_TYPE_NAMES.get(frame_type, f"unknown 0x{frame_type:04X}")


def widen_packet_number(low: int, reference: int | None) -> int:
    """The 16-bit packet number ending in `low` that is closest to `reference`."""
    if reference is None:
        return low
    base = (reference & 0xFF00) | low
    best = base
    for candidate in (base - 0x100, base + 0x100):
        if abs(candidate - reference) < abs(best - reference):
            best = candidate
    return best & 0xFFFF


def receive_response_layout(status: int) -> tuple[int, bool]:
    """(bytes of optional fields, whether the packet number's high byte is among them)."""
    size = 0
    for bit, width in _OPTIONAL_FIELDS:
        if not status & bit:
            size += width
    return size, not status & 0x10


# Indexed by the status word's low five bits, the only ones that decide the layout.
_LAYOUTS = tuple(receive_response_layout(bits) for bits in range(32))


@dataclass(slots=True)
class TransportCounters(Counters):
    """What the transport layer saw (see the module docstring)."""

    receive_requests: int = 0
    invalid_receive_requests: int = 0
    receive_responses: int = 0
    invalid_receive_responses: int = 0
    packets: int = 0
    truncated_packets: int = 0
    retransmitted_packets: int = 0
    command_requests: int = 0
    retransmitted_command_requests: int = 0
    invalid_command_requests: int = 0
    command_responses: int = 0
    retransmitted_command_responses: int = 0
    unmatched_command_responses: int = 0
    invalid_command_responses: int = 0
    pings: int = 0
    enumeration_frames: int = 0
    identity_responses: int = 0
    version_responses: int = 0
    unknown_frame_types: int = 0
    misdirected_frames: int = 0


class TransportDecoder:
    """Frame bodies in, transport events out (see the module docstring); keeps per-gateway state
    (the previous response's packets, outstanding commands, packet numbers when verbose)."""

    def __init__(self, *, verbose: bool = False) -> None:
        self.verbose = verbose
        self.counters = TransportCounters()
        self._request_packet_numbers: dict[int, int] = {}
        self._response_packet_numbers: dict[int, int] = {}
        self._previous_packets: dict[int, list[ReceivedPacket]] = {}
        self._pending_commands: dict[tuple[int, int], tuple[int, bytes]] = {}
        self._last_command_sequence: dict[int, int] = {}
        self._last_exchange: dict[int, tuple[int, bytes]] = {}

    def feed(self, bodies: list[bytes], times: list[datetime]) -> list[TransportEvent]:
        """Decode frame bodies, `bodies[i]` received at `times[i]`."""
        out: list[TransportEvent] = []
        # Receive polls are nearly all of the traffic, so they are handled inline here with
        # local counters; everything else goes through `_other`.
        layouts = _LAYOUTS
        verbose = self.verbose
        previous_packets = self._previous_packets
        append = out.append
        requests = responses = packet_count = truncated = retransmitted = 0
        for body, received_at in zip(bodies, times, strict=True):
            frame_type = (body[2] << 8) | body[3]
            if frame_type == RECEIVE_RESPONSE:
                length = len(body)
                if not body[0] & 0x80 or length < 6:
                    self.counters.invalid_receive_responses += 1
                    continue
                gateway_id = ((body[0] << 8) | body[1]) & 0x7FFF
                status = (body[4] << 8) | body[5]
                optional_bytes, has_high_byte = layouts[status & 0x1F]
                position = 6 + optional_bytes  # the packet number's low byte
                if length < position + 3:
                    self.counters.invalid_receive_responses += 1
                    continue
                responses += 1
                slot_counter = (body[position + 1] << 8) | body[position + 2]
                if verbose:
                    packet_number = self._packet_number(gateway_id, body, position, has_high_byte)
                    self._seen(
                        body,
                        f"status 0x{status:04X} packet number 0x{packet_number:04X} slot counter "
                        f"0x{slot_counter:04X}, {length - position - 3} packet bytes",
                        received_at,
                        out,
                    )
                if length == position + 3:
                    continue
                packets, cut_short = split_packets(body, position + 3)
                if cut_short:
                    truncated += 1
                if not packets:
                    continue
                # A retransmission repeats packets of the previous packet-bearing response.
                previous = previous_packets.get(gateway_id)
                previous_packets[gateway_id] = packets
                if previous is not None:
                    for packet in packets:
                        if packet in previous:
                            fresh = [packet for packet in packets if packet not in previous]
                            retransmitted += len(packets) - len(fresh)
                            packets = fresh
                            break
                    if not packets:
                        continue
                packet_count += len(packets)
                append((gateway_id, slot_counter, received_at, packets))
            elif frame_type == RECEIVE_REQUEST:
                if len(body) < 9 or body[0] & 0x80:
                    self.counters.invalid_receive_requests += 1
                    continue
                requests += 1
                if verbose:
                    self._request_packet_numbers[(body[0] << 8) | body[1]] = (body[6] << 8) | body[7]
                    self._seen(body, f"packet number 0x{(body[6] << 8) | body[7]:04X}", received_at, out)
            else:
                self._other(frame_type, body, received_at, out)
        counters = self.counters
        counters.receive_requests += requests
        counters.receive_responses += responses
        counters.packets += packet_count
        counters.truncated_packets += truncated
        counters.retransmitted_packets += retransmitted
        return out

    def _packet_number(self, gateway_id: int, body: bytes, position: int, has_high_byte: bool) -> int:
        """A receive response's packet number (`position`: its low byte), widened if need be."""
        if has_high_byte:
            packet_number = (body[position - 1] << 8) | body[position]
        else:
            # Widen the low byte against the poll this answers (else the last answer).
            reference = self._request_packet_numbers.get(gateway_id)
            if reference is None:
                reference = self._response_packet_numbers.get(gateway_id, 0)
            packet_number = widen_packet_number(body[position], reference)
        self._response_packet_numbers[gateway_id] = packet_number
        return packet_number

    def _other(self, frame_type: int, body: bytes, received_at: datetime, out: list[TransportEvent]) -> None:
        address = (body[0] << 8) | body[1]
        from_gateway = bool(address & 0x8000)
        gateway_id = address & 0x7FFF
        payload = body[4:]
        summary = ""
        first_event = len(out)
        if frame_type == COMMAND_REQUEST:
            summary = self._command_request(gateway_id, from_gateway, payload)
        elif frame_type == COMMAND_RESPONSE:
            summary = self._command_response(gateway_id, from_gateway, payload, received_at, out)
        elif frame_type in (PING_REQUEST, PING_RESPONSE):
            self.counters.pings += 1
        elif frame_type in (IDENTIFY_RESPONSE, ENUMERATION_RESPONSE):
            if len(payload) >= 8 and from_gateway:
                self.counters.identity_responses += 1
                long_address = payload[:8]
                summary = describe_address(long_address)
                out.append(
                    GatewayIdentityObserved(
                        gateway_id, long_address, frame_type == ENUMERATION_RESPONSE, received_at
                    )
                )
            else:
                self.counters.misdirected_frames += 1
        elif frame_type == VERSION_RESPONSE:
            if from_gateway and payload:
                self.counters.version_responses += 1
                version = payload.decode("ascii", errors="replace")
                summary = '"' + " ".join(version.split()) + '"'  # CR-separated lines, as one
                out.append(GatewayVersionObserved(gateway_id, version, received_at))
            else:
                self.counters.misdirected_frames += 1
        elif frame_type == ENUMERATION_START_REQUEST:
            self.counters.enumeration_frames += 1
            if len(payload) >= 6:
                enumeration_id = ((payload[4] << 8) | payload[5]) & 0x7FFF
                summary = f"enumerate at {enumeration_id}"
                out.append(EnumerationStarted(enumeration_id, received_at))
        elif frame_type == ASSIGN_GATEWAY_ID_REQUEST:
            self.counters.enumeration_frames += 1
            if len(payload) >= 14:
                new_id = ((payload[12] << 8) | payload[13]) & 0x7FFF
                summary = f"{describe_address(payload[4:12])} -> {new_id}"
                out.append(GatewayIdAssigned(gateway_id, payload[4:12], new_id, received_at))
        elif frame_type == ENUMERATION_END_REQUEST:
            self.counters.enumeration_frames += 1
            out.append(EnumerationEnded(gateway_id, received_at))
        elif frame_type in FRAME_TYPE_NAMES:
            self.counters.enumeration_frames += 1
        else:
            self.counters.unknown_frame_types += 1
            summary = payload.hex(" ")
        if self.verbose:
            self._seen(body, summary, received_at, out, at_index=first_event)

    def _command_request(self, gateway_id: int, from_gateway: bool, payload: bytes) -> str:
        if from_gateway or len(payload) < 5:
            self.counters.invalid_command_requests += 1
            return "invalid"
        packet_type, sequence = payload[3], payload[4]
        self._pending_commands[(gateway_id, sequence)] = (packet_type, payload[5:])
        if self._last_command_sequence.get(gateway_id) == sequence:
            self.counters.retransmitted_command_requests += 1
        else:
            self.counters.command_requests += 1
            self._last_command_sequence[gateway_id] = sequence
        return f"{packet_type_name(packet_type)} seq 0x{sequence:02X} data {payload[5:].hex(' ')}"

    def _command_response(
        self,
        gateway_id: int,
        from_gateway: bool,
        payload: bytes,
        received_at: datetime,
        out: list[TransportEvent],
    ) -> str:
        if not from_gateway or len(payload) < 5:
            self.counters.invalid_command_responses += 1
            return "invalid"
        packet_type, sequence = payload[3], payload[4]
        summary = f"{packet_type_name(packet_type)} seq 0x{sequence:02X} data {payload[5:].hex(' ')}"
        request = self._pending_commands.pop((gateway_id, sequence), None)
        fingerprint = (sequence, payload[3:])
        if request is None and self._last_exchange.get(gateway_id) == fingerprint:
            self.counters.retransmitted_command_responses += 1
            return summary + " (retransmission)"
        if request is not None and self._last_exchange.get(gateway_id) == fingerprint:
            # The controller re-sent its request and the gateway replayed the same answer.
            self.counters.retransmitted_command_responses += 1
            return summary + " (retransmission)"
        self._last_exchange[gateway_id] = fingerprint
        if request is None:
            self.counters.unmatched_command_responses += 1
            out.append(CommandExchanged(gateway_id, None, None, packet_type, payload[5:], received_at))
        else:
            self.counters.command_responses += 1
            out.append(
                CommandExchanged(gateway_id, request[0], request[1], packet_type, payload[5:], received_at)
            )
        return summary

    def _seen(
        self,
        body: bytes,
        summary: str,
        received_at: datetime,
        out: list[TransportEvent],
        at_index: int | None = None,
    ) -> None:
        """Describe a frame; placed before the events it caused when `at_index` is given."""
        address = (body[0] << 8) | body[1]
        frame_type = (body[2] << 8) | body[3]
        out.insert(
            len(out) if at_index is None else at_index,
            FrameSeen(
                gateway_id=address & 0x7FFF,
                from_gateway=bool(address & 0x8000),
                frame_type=frame_type,
                name=frame_type_name(frame_type),
                summary=summary,
                received_at=received_at,
            ),
        )


# --------------------------------------------------------------------------------------------
# Payload encoders (the inverse of the decoding above; the simulator and tests use them)


def encode_receive_request(packet_number: int, unknown: bytes = b"\x00\x01", trailer: int = 0x04) -> bytes:
    return unknown + packet_number.to_bytes(2, "big") + bytes((trailer,))


def encode_receive_response(
    status: int,
    packet_number: int,
    slot_counter: int,
    packets: bytes = b"",
    *,
    rx_buffers_used: int = 0,
    tx_buffers_free: int = 0x0E,
    unknown_a: bytes = b"\x00\x01",
    unknown_b: bytes = b"\x02\x00",
) -> bytes:
    """Payload of frame 0x0149 with exactly the optional fields `status` bits 0-4 announce."""
    payload = status.to_bytes(2, "big")
    if not status & 0x01:
        payload += bytes((rx_buffers_used,))
    if not status & 0x02:
        payload += bytes((tx_buffers_free,))
    if not status & 0x04:
        payload += unknown_a
    if not status & 0x08:
        payload += unknown_b
    if not status & 0x10:
        payload += bytes((packet_number >> 8,))
    return payload + bytes((packet_number & 0xFF,)) + slot_counter.to_bytes(2, "big") + packets


def encode_command_request(packet_type: int, sequence: int, data: bytes) -> bytes:
    return b"\x00\x00\x00" + bytes((packet_type, sequence)) + data


def encode_command_response(
    packet_type: int, sequence: int, data: bytes, tx_buffers_free: int = 0x0D
) -> bytes:
    return bytes((0x00, tx_buffers_free, 0x00, packet_type, sequence)) + data


ENUMERATION_MAGIC = bytes.fromhex("37249266")


def encode_enumeration_start_request(enumeration_id: int) -> bytes:
    return ENUMERATION_MAGIC + enumeration_id.to_bytes(2, "big")


def encode_identity_response(long_address: bytes, gateway_id: int) -> bytes:
    return long_address + gateway_id.to_bytes(2, "big")


def encode_assign_gateway_id_request(long_address: bytes, new_gateway_id: int) -> bytes:
    return ENUMERATION_MAGIC + long_address + new_gateway_id.to_bytes(2, "big")
