"""The controller and the gateways, over time: timestamped bus bytes plus ground truth.

Timeline: the controller polls each gateway in turn every `poll_interval` seconds (receive
request, receive response) and slips scheduled commands in between: gateway enumeration and a
node table after a controller start, node tables and long network status at night, network
status, pings, broadcasts, string and PV configuration requests, the occasional unknown frame.
The bus is half duplex at 3840 bytes/s; every frame occupies it for its length.

Optimizers measure on their report period and phase against their gateway's slot counter (5 ms
slots with a per-gateway oscillator error), then hand the report to the gateway after a delay:
usually a second or two, sometimes tens of seconds, sometimes bundled with their next report
(two packets with one DSN). The gateway numbers packets; the controller asks for "packets from
N" and, when it did not get an answer, asks again with the same N, so the gateway retransmits.

Noise (`noise` = probability per frame): garbage bytes between frames, bit errors and
truncations. Half of the damage is on the whole wire (the controller misses the frame too, so
it retries, as it would on a real bus); half is local to the listener (a bad tap), which loses
that frame for good. A report is `destroyed` when no intact copy of it ever reached the
listener; the decoder cannot be expected to output it.

The ground truth is emitted through a callback as plain dictionaries (see `truth_*` below).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from recorder.protocol import encode
from recorder.protocol.barcode import barcode_from_address, format_long_address
from recorder.protocol.events import NodeTableEntry, PowerReport, TopologyReport
from recorder.protocol.pv import application as app
from recorder.protocol.slots import SLOT_CYCLE, slot_counter_from_index
from recorder.sim.config import SimulationConfig
from recorder.sim.model import ArrayModel, GatewayModel, Optimizer

LINE_RATE = 3840.0  # bytes per second at 38400 8N1
TURNAROUND = 0.002  # seconds between a request and its response
MAX_PACKETS_PER_RESPONSE = 3
NODE_TABLE_PAGE = 12
ALIAS_BIT = 0x8000

Truth = dict[str, Any]


@dataclass
class _Report:
    """A report in flight, and whether any intact copy of it reached the listener."""

    truth: Truth
    report: PowerReport
    reached_listener: bool = False

    def payload(self) -> tuple[int, bytes, list[_Report]]:
        return app.POWER_REPORT, app.encode_power_report(self.report), [self]


@dataclass
class _Packet:
    data: bytes  # the packet as it appears in a receive response
    reports: list[_Report]
    number: int = 0


@dataclass
class _GatewayState:
    model: GatewayModel
    next_packet_number: int
    dsn: int
    buffer: list[_Packet] = field(default_factory=list)
    request_number: int = 0  # what the controller asks for next
    polls: int = 0
    command_sequence: int = 1
    table: dict[int, bytes] = field(default_factory=dict)  # node ID -> long address


@dataclass
class _NodeState:
    optimizer: Optimizer
    gateway: _GatewayState
    awake: bool = False
    held: _Report | None = None  # a report waiting to be bundled with the next one


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds")


class BusSimulation:
    def __init__(self, config: SimulationConfig) -> None:
        self.config = config.validate()
        self.model = ArrayModel(
            config.start, config.gateways, config.nodes, config.seed, config.report_period_slots
        )
        self._rng = random.Random(f"bus-{config.seed}")  # controller and gateway behaviour
        self._noise_rng = random.Random(f"noise-{config.seed}")
        self._measure_rng = random.Random(f"measure-{config.seed}")
        self._firmware_4x = config.firmware == "4x"
        self._end = config.duration.total_seconds()
        self._gateways = [
            _GatewayState(
                model=gateway,
                next_packet_number=self._rng.randrange(0x10000),
                dsn=self._rng.randrange(256),
                table={o.node_id: o.long_address for o in gateway.optimizers},
            )
            for gateway in self.model.gateways
        ]
        for state in self._gateways:
            state.request_number = state.next_packet_number
        first_gateway = self.model.gateways[0].gateway_id
        self._silenced = {  # (gateway, node) -> seconds from which it no longer reports
            (first_gateway, node_id): (since - config.start).total_seconds()
            for node_id, since in config.silence
        }
        self._nodes: list[_NodeState] = []
        self._node_heap: list[tuple[float, int, int]] = []  # (time, tiebreak, node index)
        self._deliveries: list[
            tuple[float, int, int, list[_Packet]]
        ] = []  # (time, tiebreak, gateway, packets)
        self._tasks: list[tuple[float, int, Callable[[float], float]]] = []
        self._tiebreak = 0
        self._chunks: list[tuple[bytes, float]] = []
        self._on_truth: Callable[[Truth], None] = lambda _truth: None
        self.statistics = {"reports": 0, "destroyed_reports": 0, "frames": 0, "damaged_frames": 0}

    # ---------------------------------------------------------------------------------------
    # Public

    def run(self, on_truth: Callable[[Truth], None] | None = None) -> Iterator[tuple[bytes, float]]:
        """Yield `(bus bytes, seconds since start)` in time order; report truth via `on_truth`."""
        if on_truth is not None:
            self._on_truth = on_truth
        self._emit_initial_truth()
        self._schedule_nodes()
        self._schedule_controller()
        gateway_count = len(self._gateways)
        stagger = self.config.poll_interval / gateway_count
        next_poll = [index * stagger for index in range(gateway_count)]
        now = 0.0
        while True:
            poll_index = min(range(gateway_count), key=next_poll.__getitem__)
            poll_time = next_poll[poll_index]
            task_time = self._tasks[0][0] if self._tasks else float("inf")
            action_time = min(poll_time, task_time)
            if action_time >= self._end and self._drained():
                break
            now = max(now, action_time)
            self._advance_nodes(now)
            if task_time <= poll_time:
                _, _, task = heapq.heappop(self._tasks)
                now = task(now)
            else:
                now = self._poll(self._gateways[poll_index], now)
                next_poll[poll_index] = max(poll_time + self.config.poll_interval, now)
            if self._chunks:
                yield from self._chunks
                self._chunks = []
        for state in self._gateways:  # whatever is still buffered was never acknowledged
            for packet in state.buffer:
                self._settle(packet)

    # ---------------------------------------------------------------------------------------
    # Ground truth

    def _at(self, seconds: float) -> datetime:
        return self.config.start + timedelta(seconds=seconds)

    def _emit_initial_truth(self) -> None:
        for gateway in self.model.gateways:
            self._on_truth(
                {
                    "type": "gateway",
                    "gateway_id": gateway.gateway_id,
                    "long_address": format_long_address(gateway.long_address),
                    "barcode": gateway.barcode,
                }
            )
            for optimizer in gateway.optimizers:
                self._truth_mapping(
                    gateway.gateway_id, optimizer.node_id, optimizer.long_address, 0.0, optimizer.string_name
                )

    def _truth_mapping(
        self, gateway_id: int, node_id: int, long_address: bytes, seconds: float, string: str | None = None
    ) -> None:
        self._on_truth(
            {
                "type": "mapping",
                "gateway_id": gateway_id,
                "node_id": node_id,
                "long_address": format_long_address(long_address),
                "barcode": barcode_from_address(long_address),
                "valid_from": _iso(self._at(seconds)),
                "string": string,  # the string the optimizer is wired in (the array's truth, not on the bus)
            }
        )

    def _settle(self, packet: _Packet) -> None:
        """A packet left the gateway for good: its reports' fate is now known."""
        for report in packet.reports:
            report.truth["destroyed"] = not report.reached_listener
            self.statistics["destroyed_reports"] += not report.reached_listener
            self._on_truth(report.truth)

    # ---------------------------------------------------------------------------------------
    # Optimizers

    def _push(self, heap: list[Any], item: tuple[Any, ...]) -> None:
        self._tiebreak += 1
        heapq.heappush(heap, (item[0], self._tiebreak, *item[1:]))

    def _schedule_nodes(self) -> None:
        period = self.config.report_period_slots
        # Nodes with light at the start have joined the mesh already: no join announcement.
        awake_at_start = self.model.is_awake(0.0)
        for state in self._gateways:
            for optimizer in state.model.optimizers:
                index = len(self._nodes)
                self._nodes.append(_NodeState(optimizer, state, awake=awake_at_start))
                self._push(
                    self._node_heap, (self._next_measurement(state.model, optimizer, 0.0, period), index)
                )
        reassignment = self.config.reassignment_time
        if reassignment is not None:
            seconds = (reassignment - self.config.start).total_seconds()
            self._push(self._tasks, (seconds, self._reassign))

    def _next_measurement(
        self, gateway: GatewayModel, optimizer: Optimizer, after: float, period: int
    ) -> float:
        slot = gateway.slot_at(after)
        cycles = (slot - optimizer.phase_slots) // period + 1
        return gateway.time_of_slot(optimizer.phase_slots + cycles * period)

    def _advance_nodes(self, now: float) -> None:
        period = self.config.report_period_slots
        heap = self._node_heap
        while heap and heap[0][0] <= now:
            measured, _, index = heapq.heappop(heap)
            node = self._nodes[index]
            gateway = node.gateway.model
            if measured >= self._end:
                self._release_held(node, measured)
                continue  # nothing is measured after the simulated period
            awake = self.model.is_awake(measured)
            silenced = self._silenced.get((node.optimizer.gateway_id, node.optimizer.node_id))
            if silenced is not None and measured >= silenced:
                awake = False  # a dead optimizer (or radio): it stops reporting for good
            if awake and not node.awake:
                self._topology_report(node, measured)
            elif node.awake and not awake:
                self._release_held(node, measured)  # last words before the light goes
            node.awake = awake
            if awake:
                self._measure(node, measured)
                if self._rng.random() < 1 / 400:  # now and then during the day
                    self._topology_report(node, measured + self._rng.uniform(1, 10))
                step = period
            else:
                step = period * 3  # asleep: look again a minute later, on the same phase
            slot = gateway.slot_at(measured)
            self._push(heap, (gateway.time_of_slot(slot + step), index))
        deliveries = self._deliveries
        while deliveries and deliveries[0][0] <= now:
            _, _, gateway_index, packets = heapq.heappop(deliveries)
            state = self._gateways[gateway_index]
            for packet in packets:
                packet.number = state.next_packet_number
                state.next_packet_number = (state.next_packet_number + 1) & 0xFFFF
                state.buffer.append(packet)

    def _deliver(
        self, node: _NodeState, seconds: float, payloads: list[tuple[int, bytes, list[_Report]]]
    ) -> None:
        """Packets reach the gateway at `seconds`; bundled packets share one DSN."""
        state = node.gateway
        state.dsn = (state.dsn + 1) & 0xFF
        packets = [
            _Packet(
                encode.packet(
                    packet_type,
                    node.optimizer.node_id,
                    data,
                    short_address=node.optimizer.short_address,
                    dsn=state.dsn,
                ),
                reports,
            )
            for packet_type, data, reports in payloads
        ]
        self._push(self._deliveries, (seconds, self._gateways.index(state), packets))

    def _measure(self, node: _NodeState, measured: float) -> None:
        gateway = node.gateway.model
        slot = gateway.slot_at(measured)
        slot_counter = slot_counter_from_index(round(slot) % SLOT_CYCLE)
        report = self.model.measure(node.optimizer, measured, slot_counter, self._measure_rng)
        if self._firmware_4x:
            report = report._replace(tail=self._rng.choice((b"\x00", b"\x02\x00", b"\x03\x00", b"\x00\x00")))
        in_flight = _Report(self._truth_report(node.optimizer, measured, report), report)
        self.statistics["reports"] += 1
        if node.held is not None:
            held, node.held = node.held, None
            self._deliver(node, measured + self._rng.uniform(0.3, 2.0), [held.payload(), in_flight.payload()])
            return
        roll = self._rng.random()
        if roll < 0.08:
            node.held = in_flight  # bundled with this node's next report
            return
        delay = self._rng.uniform(20, 45) if roll < 0.10 else self._rng.uniform(0.3, 4.0)
        self._deliver(node, measured + delay, [in_flight.payload()])

    def _release_held(self, node: _NodeState, now: float) -> None:
        if node.held is not None:
            held, node.held = node.held, None
            self._deliver(node, now + self._rng.uniform(0.3, 2.0), [held.payload()])

    def _truth_report(self, optimizer: Optimizer, measured: float, report: PowerReport) -> Truth:
        return {
            "type": "power_report",
            "gateway_id": optimizer.gateway_id,
            "node_id": optimizer.node_id,
            "barcode": optimizer.barcode,
            "measured_at": _iso(self._at(measured)),
            "voltage_in": report.voltage_in,
            "voltage_out": report.voltage_out,
            "current_in": report.current_in,
            "duty_cycle": report.duty_cycle,
            "temperature": report.temperature,
            "rssi": report.rssi,
            "slot_counter": report.slot_counter,
            "destroyed": False,
        }

    def _topology_report(self, node: _NodeState, seconds: float) -> None:
        if not self.config.identity:
            return
        optimizer = node.optimizer
        report = TopologyReport(
            short_address=optimizer.short_address,
            node_id=optimizer.node_id,
            next_hop=1,
            unknown=b"\x00\x02",
            long_address=optimizer.long_address,
            rssi=max(0, min(255, optimizer.rssi_base - 20)),
            tail=bytes((0x01, 0xE9, 0xE1, 0x08, 0x95, 0x27)),
        )
        self._deliver(
            node,
            seconds + self._rng.uniform(0.2, 1.5),
            [(app.TOPOLOGY_REPORT, app.encode_topology_report(report), [])],
        )

    def _reassign(self, now: float) -> float:
        """An optimizer is replaced: its node ID now belongs to a new long address, and the
        gateway's table also lists the ID with bit 15 set for the new unit (NOTES 4)."""
        node = self._nodes[self._rng.randrange(min(len(self._nodes), self.config.nodes))]
        gateway = node.gateway
        old = node.optimizer
        new_address = self.model.replacement_address()
        replacement = Optimizer(**{**old.__dict__, "long_address": new_address})
        node.optimizer = replacement
        gateway.model.optimizers[gateway.model.optimizers.index(old)] = replacement
        gateway.table[old.node_id] = new_address
        gateway.table[old.node_id | ALIAS_BIT] = new_address
        self._truth_mapping(gateway.model.gateway_id, old.node_id, new_address, now, old.string_name)
        self._truth_mapping(
            gateway.model.gateway_id, old.node_id | ALIAS_BIT, new_address, now, old.string_name
        )
        # The new unit joins the mesh: it announces itself at once if it has power, and again
        # shortly after, as a node that just joined does (unless `quiet_replacement`).
        if self.model.is_awake(now) and not self.config.quiet_replacement:
            self._topology_report(node, now)
            self._topology_report(node, now + 40)
        node.awake = self.model.is_awake(now)
        # Commissioning the new unit: the controller reads the gateway's node table again.
        self._schedule(now + 60, partial(self._node_table, gateway))
        return now

    # ---------------------------------------------------------------------------------------
    # The bus

    def _frame(self, frame: bytes, now: float, *, response: bool) -> tuple[bytes, float, str | None]:
        """Apply noise to one frame. Returns (bytes on the wire, time after it, damage kind)."""
        damage = None
        rng = self._noise_rng
        self.statistics["frames"] += 1
        if self.config.noise and rng.random() < self.config.noise:
            kind = rng.choice(
                ("garbage", "local bit errors", "wire bit errors", "local truncation", "wire truncation")
            )
            start = frame.index(b"\x7e\x07")
            if kind == "garbage":
                garbage = bytes(rng.randrange(256) for _ in range(rng.randint(1, 24)))
                frame = garbage + frame
            elif kind.endswith("bit errors"):
                damaged = bytearray(frame)
                for position in rng.sample(range(start, len(frame)), rng.randint(1, 3)):
                    damaged[position] ^= 1 << rng.randrange(8)
                frame = bytes(damaged)
                damage = "wire" if kind.startswith("wire") else "local"
            else:
                frame = frame[: rng.randint(start + 2, len(frame) - 2)]
                damage = "wire" if kind.startswith("wire") else "local"
            if damage:
                self.statistics["damaged_frames"] += 1
        duration = len(frame) / LINE_RATE
        return frame, now + duration, damage

    def _exchange(
        self, request: bytes, make_response: Callable[[float], bytes | None], now: float
    ) -> tuple[float, bool, str | None]:
        """One request/response on the bus. Returns (time after, response sent, response damage)."""
        request, now, request_damage = self._frame(request, now, response=False)
        if request_damage == "wire":
            # The gateway never understood it: no answer; the controller times out.
            self._chunks.append((request, now))
            return now + 0.05, False, None
        now += TURNAROUND
        response = make_response(now)
        if response is None:
            self._chunks.append((request, now))
            return now + TURNAROUND, False, None
        response, end, response_damage = self._frame(response, now, response=True)
        self._chunks.append((request + response, end))
        return end + TURNAROUND, True, response_damage

    def _status_word(self, state: _GatewayState, has_packets: bool) -> int:
        state.polls += 1
        if state.polls % 16 == 0:
            low = 0xE0
        elif has_packets:
            low = 0xEE if state.polls % 2 else 0xFE
        else:
            low = 0xFF if state.polls % 5 else 0xFE
        if not self._firmware_4x:
            return low
        if self._gateways.index(state) % 2:  # bits 5-7 differ between gateway firmwares (NOTES 2)
            low = (low & 0x1F) | 0xA0
        return 0x0100 | low  # firmware 4.x: bit 8 set; the top bits are added per response

    def _poll(self, state: _GatewayState, now: float) -> float:
        gateway_id = state.model.gateway_id
        number = state.request_number
        # Packets before `number` were acknowledged by this request.
        while state.buffer and ((state.buffer[0].number - number) & 0xFFFF) >= 0x8000:
            self._settle(state.buffer.pop(0))
        chosen: list[_Packet] = []
        size = 0
        for packet in state.buffer:
            if len(chosen) == MAX_PACKETS_PER_RESPONSE or size + len(packet.data) > 200:
                break
            chosen.append(packet)
            size += len(packet.data)
        last = chosen[-1].number if chosen else (number - 1) & 0xFFFF
        status = self._status_word(state, bool(chosen))

        def response(at: float) -> bytes:
            slot = state.model.slot_at(at)
            slot_counter = slot_counter_from_index(int(slot) % SLOT_CYCLE)
            status_word = status
            if self._firmware_4x:  # the top two bits count the slot counter's wraps (NOTES 2)
                status_word |= (int(slot // SLOT_CYCLE) % 4) << 14
            return encode.receive_response(
                gateway_id,
                status_word,
                last,
                slot_counter,
                [packet.data for packet in chosen],
                rx_buffers_used=len(state.buffer),
            )

        now, answered, damage = self._exchange(encode.receive_request(gateway_id, number), response, now)
        if answered:
            for packet in chosen:
                if damage is None:
                    for report in packet.reports:
                        if not report.reached_listener:  # the first intact copy's end on the wire
                            report.truth["reached_listener_at"] = _iso(self._at(now - TURNAROUND))
                        report.reached_listener = True
            missed = damage == "wire" or (chosen and self._rng.random() < 0.005)
            if not missed:
                state.request_number = (last + 1) & 0xFFFF
        return now

    def _command(
        self,
        state: _GatewayState,
        packet_type: int,
        data: bytes,
        response_type: int,
        response_data: bytes,
        now: float,
    ) -> float:
        """A command exchange; repeated (same sequence number) while the answer is lost on the wire."""
        gateway_id = state.model.gateway_id
        sequence = state.command_sequence
        state.command_sequence = state.command_sequence % 253 + 1  # the controller avoids 00 and FF
        for _attempt in range(5):
            now, answered, damage = self._exchange(
                encode.command_request(gateway_id, packet_type, sequence, data),
                lambda _at: encode.command_response(gateway_id, response_type, sequence, response_data),
                now,
            )
            if answered and damage != "wire":
                break
            now += 0.1
        return now

    def _simple(self, request: bytes, response: bytes, now: float) -> float:
        now, _answered, _damage = self._exchange(request, lambda _at: response, now)
        return now

    def _drained(self) -> bool:
        if self._deliveries or any(node.held for node in self._nodes):
            return False
        return all(
            not state.buffer or state.request_number == (state.buffer[-1].number + 1) & 0xFFFF
            for state in self._gateways
        )

    # ---------------------------------------------------------------------------------------
    # Controller schedule

    def _schedule(self, seconds: float, task: Callable[[float], float]) -> None:
        if seconds < self._end:
            self._push(self._tasks, (seconds, task))

    def _schedule_controller(self) -> None:
        if self.config.controller_restart:
            self._schedule(0.0, self._enumerate)
            for index, state in enumerate(self._gateways):
                self._schedule(2.0 + index, partial(self._radio_configuration, state))
                self._schedule(5.0 + index * 20, partial(self._node_table, state))
        for index, state in enumerate(self._gateways):
            offset = index * 7.0
            self._repeat(30.0 + offset, 120.0, partial(self._ping, state))
            self._repeat(60.0 + offset, 300.0, partial(self._network_status, state))
            self._repeat(90.0 + offset, 600.0, partial(self._broadcast, state))
            self._repeat(150.0 + offset, 400.0, partial(self._string_request, state))
            self._repeat(200.0 + offset, 1800.0, partial(self._pv_configuration, state))
            self._repeat(1000.0 + offset, 3600.0, partial(self._oddities, state))
        self._schedule_nights(0.0)

    def _repeat(self, first: float, every: float, task: Callable[[float], float]) -> None:
        def run(now: float) -> float:
            self._schedule(now + every, run)
            return task(now)

        self._schedule(first, run)

    def _schedule_nights(self, now: float) -> None:
        """Node tables and long network status overnight: two hours after each sunset."""
        day, hour = self.model.local_hours(now)
        half = self.model.day_length_hours(day) / 2
        sunset_hour = 12.0 + half
        night = now + ((sunset_hour + 2.0 - hour) % 24) * 3600
        if night <= now + 1:
            night += 24 * 3600

        def nightly(at: float) -> float:
            for index, state in enumerate(self._gateways):
                self._schedule(at + 1 + index * 30, partial(self._node_table, state))
                for step in range(4):
                    self._schedule(at + 900 * (step + 1) + index, partial(self._long_network_status, state))
            self._schedule_nights(at + 3600)
            return at

        self._schedule(night, nightly)

    def _enumerate(self, now: float) -> float:
        """The controller's gateway enumeration, as in the reference's example sequence."""
        if not self.config.identity:
            return now
        enumeration_id = 0x1235
        for _ in range(3):
            now = self._simple(
                encode.enumeration_start_request(enumeration_id), encode.enumeration_start_response(), now
            )
        for state in self._gateways:
            gateway = state.model
            now = self._simple(
                encode.enumeration_request(enumeration_id),
                encode.enumeration_response(enumeration_id, gateway.long_address),
                now,
            )
            now = self._simple(
                encode.assign_gateway_id_request(enumeration_id, gateway.long_address, gateway.gateway_id),
                encode.assign_gateway_id_response(enumeration_id),
                now,
            )
        for _ in range(2):
            now, _, _ = self._exchange(encode.enumeration_request(enumeration_id), lambda _at: None, now)
        for state in self._gateways:
            gateway = state.model
            now = self._simple(
                encode.identify_request(gateway.gateway_id),
                encode.identify_response(gateway.gateway_id, gateway.long_address),
                now,
            )
            now = self._simple(
                encode.version_request(gateway.gateway_id),
                encode.version_response(gateway.gateway_id, gateway.version),
                now,
            )
        first = self._gateways[0].model.gateway_id
        return self._simple(
            encode.enumeration_end_request(first), encode.enumeration_end_response(first), now
        )

    def _node_table(self, state: _GatewayState, now: float) -> float:
        """Read the gateway's node table page by page; an empty page ends it.

        With `aliases_last`, a page lists its plain IDs, then the bit-15 aliases of those IDs,
        and the controller asks next for the highest plain ID + 1 (see `SimulationConfig`).
        """
        if not self.config.identity:
            return now
        entries = sorted(state.table.items())
        index = 0
        while True:
            if self.config.aliases_last:
                plain = [
                    NodeTableEntry(address, node_id)
                    for node_id, address in entries
                    if node_id >= index and not node_id & ALIAS_BIT
                ][:NODE_TABLE_PAGE]
                aliases = [
                    NodeTableEntry(state.table[entry.node_id | ALIAS_BIT], entry.node_id | ALIAS_BIT)
                    for entry in plain
                    if entry.node_id | ALIAS_BIT in state.table
                ]
                page = plain + aliases
                next_index = plain[-1].node_id + 1 if plain else index
            else:
                page = [NodeTableEntry(address, node_id) for node_id, address in entries if node_id >= index][
                    :NODE_TABLE_PAGE
                ]
                next_index = page[-1].node_id + 1 if page else index
            start = page[0].node_id if page else index
            now = self._command(
                state,
                app.NODE_TABLE_REQUEST,
                app.encode_node_table_request(index),
                app.NODE_TABLE_RESPONSE,
                app.encode_node_table_response(start, page),
                now,
            )
            now += 0.05
            if not page:
                return now
            index = next_index

    def _radio_configuration(self, state: _GatewayState, now: float) -> float:
        rest = (
            bytes((0x18, 0x04, 0x02, 0x01, 0, 0, 0, 0, 0x1C, 0x01, 0x5A))
            + bytes(range(16))
            + bytes((0, 0, 2, 0, 0x3C, 0))
        )
        data = app.encode_radio_configuration_response(0x15, 0x24F6, rest)
        return self._command(
            state, app.RADIO_CONFIGURATION_REQUEST, b"\x00\x01", app.RADIO_CONFIGURATION_RESPONSE, data, now
        )

    def _ping(self, state: _GatewayState, now: float) -> float:
        gateway_id = state.model.gateway_id
        return self._simple(encode.ping_request(gateway_id), encode.ping_response(gateway_id), now)

    def _network_status(self, state: _GatewayState, now: float) -> float:
        count = len(state.model.optimizers) + 1
        awake = sum(1 for node in self._nodes if node.gateway is state and node.awake) + 1
        data = app.encode_network_status_response(
            1, int(now) & 0xFFFF, (count, awake, count), with_node_id=True
        )
        return self._command(state, app.NETWORK_STATUS_REQUEST, b"", app.NETWORK_STATUS_RESPONSE, data, now)

    def _long_network_status(self, state: _GatewayState, now: float) -> float:
        count = len(state.model.optimizers) + 1
        request = (
            bytes((0xBA, 0xBE, 0x02))
            + (int(now) & 0xFFFF).to_bytes(2, "big")
            + count.to_bytes(2, "big")
            + b"\x01"
        )
        data = app.encode_network_status_response(1, int(now) & 0xFFFF, (count, count, count))
        return self._command(
            state, app.LONG_NETWORK_STATUS_REQUEST, request, app.NETWORK_STATUS_RESPONSE, data, now
        )

    def _broadcast(self, state: _GatewayState, now: float) -> float:
        return self._command(state, app.BROADCAST, b"", app.BROADCAST_ACK, b"", now)

    def _awake_node(self, state: _GatewayState) -> _NodeState | None:
        awake = [node for node in self._nodes if node.gateway is state and node.awake]
        return self._rng.choice(awake) if awake else None

    def _string_request(self, state: _GatewayState, now: float) -> float:
        node = self._awake_node(state)
        if node is None:
            return now
        text = self._rng.choice(("^00Version\r", "^00Info\r", "^00Tests\r"))
        now = self._command(
            state,
            app.STRING_REQUEST,
            app.encode_string_request(node.optimizer.node_id, text),
            app.STRING_RESPONSE,
            b"",
            now,
        )
        answers = {
            "^00Version\r": b"Mnode Version K8.0120 (2D)\r",
            "^00Info\r": b"!Info 0000 15 0000 0981 00 0000 0000 FF 00 0000 0FFF 000 2",
            "^00Tests\r": b"!Tests 0 0 2 0 00 0000 00\r",
        }
        self._deliver(node, now + self._rng.uniform(0.5, 3.0), [(app.STRING_RESPONSE, answers[text], [])])
        return now

    def _pv_configuration(self, state: _GatewayState, now: float) -> float:
        node = self._awake_node(state)
        if node is None:
            return now
        period = self.config.report_period_slots
        phase = node.optimizer.phase_slots
        rest = bytes((0x00, 0x09, 0x02, 0, 0, 0, 0, 0, 0x30, 0x02, 0, 0, 0, 0))
        request = app.encode_pv_configuration_request(
            node.optimizer.node_id, app.POWER_REPORT, period, phase, rest
        )
        now = self._command(
            state, app.PV_CONFIGURATION_REQUEST, request, app.PV_CONFIGURATION_REQUEST, b"", now
        )
        answer = app.encode_pv_configuration_response(0x24F6, 0x15, app.POWER_REPORT, period, phase)
        self._deliver(node, now + self._rng.uniform(0.5, 3.0), [(app.PV_CONFIGURATION_RESPONSE, answer, [])])
        return now

    def _oddities(self, state: _GatewayState, now: float) -> float:
        """Traffic seen in the wild that a decoder must survive (NOTES 11)."""
        gateway_id = state.model.gateway_id
        unknown_41 = bytes.fromhex("0000000100AA0000000004050FE8089509FD8FF605C7")
        now = self._command(state, 0x41, unknown_41, 0x41, b"", now)
        frame, now, _ = self._frame(
            encode.gateway_frame(gateway_id, 0x0E03, bytes(11) + b"\x01\x03"), now, response=True
        )
        self._chunks.append((frame, now))
        return now + TURNAROUND
