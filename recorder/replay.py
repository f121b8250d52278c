"""Recorded bus bytes straight to line protocol: the backfill fast lane.

`recorder run` turns each power report into a `Reading` (observer) and later into a point
(sender), which is clear and plenty fast for a live bus. A backfill pushes weeks of reports
through the same steps, and per-report Python objects dominate its cost. This module keeps the
canonical decoder for everything (framing, status words, packet numbers, retransmission
de-duplication, node tables, topology reports, gateway identity: `Stack`, `Observer`) and only
replaces its last steps for power reports: `LineTransport` is the canonical transport decoder
whose packet loop turns a power report directly into a line, with integer millisecond
arithmetic and cached look-ups; every other packet goes to `LineApplication`, the canonical
application decoder that also keeps the identity caches and the lines. `line_stack` pairs them.

It reproduces the canonical result exactly (tests compare the two on simulated traffic with
noise, firmware 4.x, two gateways and a replacement):

* measurement time: receive time (whole ms) minus 5 ms per slot back from the response's
  counter, as `SlotClock` does;
* duplicates: same (gateway, node, slot counter) within 3 s, as `Observer` does;
* identity: the interval valid at the measurement time, the first interval covering earlier
  times, as `IdentityMap.resolve` does; readings of unknown nodes are held until their mapping is
  learned (their lines are then produced with it) or the input ends. Identity packets (topology
  reports, node table pages) go to the observer the moment they are decoded, so a mapping is
  learned before the next report is placed, exactly in stream order, however the input is
  chunked;
* the line: `points.optimizer_tags` + `points.optimizer_fields`, the same functions `run` uses;
* the counters (packets, truncated, retransmitted, invalid reports) are the canonical ones;
* daily energy: when `samples` is a list, every reading that becomes a line is also appended to
  it as an energy `Sample` with the long address its line is tagged with, at the moment its line
  is made (as `recorder run` feeds a reading when it becomes ready to send), for the backfill to
  integrate exactly as `run` does;
* node activity (first and last measurement time and count of each node's readings, what
  `recorder nodes list` shows as LAST REPORT) is what `StateStore.record_outputs` would count from
  the same readings (`LineApplication.activity`).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from datetime import datetime

from recorder.energy import Sample
from recorder.identity import IdentityMap, NodeKey
from recorder.observer import DUPLICATE_WINDOW, GatewayLearned, MappingLearned, Observer, Output
from recorder.protocol.events import Event
from recorder.protocol.gateway.transport import TransportDecoder
from recorder.protocol.pv.application import (
    POWER_REPORT,
    POWER_REPORT_BYTES,
    ApplicationDecoder,
    power_report_values,
)
from recorder.protocol.pv.network import HEADER_BYTES
from recorder.protocol.slots import FUTURE_TOLERANCE_SLOTS, SLOT_CYCLE, SLOTS_PER_EPOCH
from recorder.protocol.stack import Stack
from recorder.sinks.points import (
    CURRENT_IN,
    DUTY_CYCLE,
    TEMPERATURE,
    VOLTAGE_IN,
    VOLTAGE_OUT,
    PointIdentity,
    current_out_text,
    optimizer_fields,
    optimizer_tags,
    power_text,
    power_value,
)
from recorder.timestamps import to_millis

_WINDOW_MS = int(DUPLICATE_WINDOW.total_seconds() * 1000)
_TEXT_CACHE_SIZE = 1 << 16  # entries per field-text cache (under 10 MB each)

# (measurement ms, raw values) of a reading waiting for its node's identity
Values = tuple[int, int, int, int, int, int]  # raw wire integers, `optimizer_fields` order
Held = tuple[int, Values]


class LineApplication(ApplicationDecoder):
    """The application decoder, with power reports turned straight into line protocol.

    `emit=False` (a first, identity-only pass) counts power reports without decoding them.
    """

    def __init__(
        self,
        identities: IdentityMap,
        tags: Callable[[int, int, bytes | None], PointIdentity],
        observer: Observer,
        *,
        emit: bool = True,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> None:
        super().__init__()
        self.identities = identities
        self.tags = tags
        self.observer = observer
        self.learned: list[Output] = []  # identity the input revealed, to persist
        self.emit = emit
        self.since_ms = since_ms
        self.until_ms = until_ms
        self.lines: list[str] = []
        self.held: dict[NodeKey, list[Held]] = {}
        self.readings = 0
        self.duplicate_reports = 0
        self.out_of_range = 0
        # (gateway << 32 | node << 16 | slot counter) -> measurement ms of its last reading
        self.recent: dict[int, int] = {}
        self._intervals: dict[NodeKey, tuple[list[int], list[bytes]]] = {}
        self._prefixes: dict[tuple[int, int, bytes | None], str] = {}
        # Line prefix of nodes with one identity for all time: their readings skip the look-ups.
        self.fixed: dict[NodeKey, str] = {}
        self.fixed_address: dict[NodeKey, bytes] = {}
        self.samples: list[Sample] | None = None  # daily energy's readings (see module docstring)
        self._last_at: datetime | None = None
        self._last_ms = 0
        # The texts of the two computed fields, by the raw integers that decide them (power:
        # Vin x Iin; current_out: Iin << 8 | duty): formatting a float is the costliest step of
        # a line, and readings repeat values (they come in 50 mV and 5 mA steps). Both are
        # cleared when one passes _TEXT_CACHE_SIZE entries, so memory stays bounded.
        self.power_texts: dict[int, str] = {}
        self.current_out_texts: dict[int, str] = {}
        # (gateway, node) -> [first ms, last ms, count] of the readings in range
        self.activity: dict[NodeKey, list[int]] = {}

    def count_report(self, key: NodeKey, measured_ms: int) -> None:
        """Note a reading in range for node activity (inlined in LineTransport's packet loop)."""
        seen = self.activity.get(key)
        if seen is None:
            self.activity[key] = [measured_ms, measured_ms, 1]
            return
        seen[2] += 1
        if measured_ms > seen[1]:
            seen[1] = measured_ms
        elif measured_ms < seen[0]:
            seen[0] = measured_ms

    def forget(self, key: NodeKey) -> None:
        """The identity of `key` changed: drop its cached intervals."""
        self._intervals.pop(key, None)
        self.fixed.pop(key, None)
        self.fixed_address.pop(key, None)

    def resolve(self, key: NodeKey, measured_ms: int) -> bytes | None:
        cached = self._intervals.get(key)
        if cached is None:
            intervals = self.identities.intervals(key)
            cached = self._intervals[key] = (
                [to_millis(interval.valid_from) for interval in intervals],
                [interval.long_address for interval in intervals],
            )
        starts, addresses = cached
        if not addresses:
            return None
        if len(addresses) == 1:
            return addresses[0]
        return addresses[max(bisect_right(starts, measured_ms) - 1, 0)]

    def prefix(self, gateway_id: int, node_id: int, address: bytes | None) -> str:
        """Measurement and tags of a line."""
        key = (gateway_id, node_id, address)
        prefix = self._prefixes.get(key)
        if prefix is None:
            prefix = self._prefixes[key] = optimizer_tags(self.tags(gateway_id, node_id, address))
        return prefix

    def emit_line(
        self, gateway_id: int, node_id: int, address: bytes | None, measured_ms: int, values: Values
    ) -> None:
        """A reading's line (and its energy sample, when asked for)."""
        self.lines.append(
            f"{self.prefix(gateway_id, node_id, address)} {optimizer_fields(*values)} {measured_ms}"
        )
        if self.samples is not None:
            self.samples.append(sample(gateway_id, node_id, address, measured_ms, values))

    def place(self, key: NodeKey, measured_ms: int, values: Values) -> None:
        """The line of a reading in range, or hold it until its node's identity is known."""
        address = self.resolve(key, measured_ms)
        if address is None:
            self.held.setdefault(key, []).append((measured_ms, values))
            return
        self.emit_line(key[0], key[1], address, measured_ms, values)
        if len(self._intervals[key][1]) == 1:
            self.fixed[key] = self.prefix(key[0], key[1], address)
            self.fixed_address[key] = address

    def received(
        self,
        gateway_id: int,
        packet_type: int,
        node_id: int,
        data: bytes,
        gateway_slot_counter: int,
        received_at: datetime,
        out: list[Event],
    ) -> None:
        if packet_type == POWER_REPORT:
            # Power reports are turned into lines inside LineTransport's packet loop; one that
            # arrived here would be decoded into an event nobody turns into a point.
            raise RuntimeError("LineApplication needs LineTransport: build it with line_stack()")
        before = len(out)
        super().received(gateway_id, packet_type, node_id, data, gateway_slot_counter, received_at, out)
        self._observe(out, before)

    def millis(self, received_at: datetime) -> int:
        if received_at is not self._last_at:  # every frame of one record shares its time object
            self._last_at = received_at
            self._last_ms = to_millis(received_at)
        return self._last_ms

    def exchanged(
        self,
        gateway_id: int,
        request_type: int | None,
        request_data: bytes | None,
        response_type: int,
        response_data: bytes,
        received_at: datetime,
        out: list[Event],
    ) -> None:
        before = len(out)
        super().exchanged(
            gateway_id, request_type, request_data, response_type, response_data, received_at, out
        )
        self._observe(out, before)

    def _observe(self, out: list[Event], before: int) -> None:
        """Hand the events just decoded to the observer now, in stream order."""
        if len(out) == before:
            return
        events = out[before:]
        del out[before:]
        self.observe(events)

    def observe(self, events: list[Event]) -> None:
        """Events the transport produced itself (gateway identity), at the end of a batch."""
        for output in self.observer.handle(events):
            if isinstance(output, MappingLearned):
                self.learned.append(output)
                self.release((output.gateway_id, output.node_id))
            elif isinstance(output, GatewayLearned):
                self.learned.append(output)

    def release(self, key: NodeKey) -> int:
        """Lines for readings of `key` held until now, if its identity is now known."""
        self.forget(key)
        waiting = self.held.get(key)
        if not waiting:
            return 0
        released = 0
        remaining = []
        for measured_ms, values in waiting:
            address = self.resolve(key, measured_ms)
            if address is None:
                remaining.append((measured_ms, values))
                continue
            self.emit_line(key[0], key[1], address, measured_ms, values)
            released += 1
        if remaining:
            self.held[key] = remaining
        else:
            del self.held[key]
        return released

    def flush_unresolved(self, write: bool) -> tuple[int, int]:
        """At the end of the input: (written without barcode, dropped)."""
        written = dropped = 0
        for (gateway_id, node_id), waiting in self.held.items():
            for measured_ms, values in waiting:
                if write:
                    self.emit_line(gateway_id, node_id, None, measured_ms, values)
                    written += 1
                else:
                    dropped += 1
        self.held.clear()
        return written, dropped


class LineTransport(TransportDecoder):
    """The transport decoder with the PV network split and the power-report step fused.

    Same counters and results as `TransportDecoder._packets` + `LineApplication`; one loop per
    receive response instead of a tuple, two slices and a method call per packet, which is
    most of what a backfill spends per report. Other packet types go to the application as
    usual (`received`).
    """

    application: LineApplication

    def __init__(self, application: LineApplication) -> None:
        super().__init__(application)
        self._previous_raw: dict[int, list[bytes]] = {}

    def _packets(
        self, gateway_id: int, body: bytes, position: int, received_at: datetime, out: list[Event]
    ) -> None:
        # Hot loop: everything it reads or counts is a local, written back once at the end.
        application = self.application
        fixed = application.fixed
        append_line = application.lines.append
        samples = application.samples
        recent = application.recent
        activity = application.activity
        emit = application.emit
        since_ms = application.since_ms
        until_ms = application.until_ms
        gateway_slot_counter = (body[position + 1] << 8) | body[position + 2]
        gateway_number = gateway_slot_counter & 0x3FFF
        gateway_slots = (gateway_slot_counter >> 14) * SLOTS_PER_EPOCH + gateway_number
        emit = emit and gateway_number < SLOTS_PER_EPOCH
        received_ms = -1  # the response's receive time in ms, computed when first needed
        recent_base = gateway_id << 32  # see `LineApplication.recent`
        previous = self._previous_raw.get(gateway_id, ())
        raws: list[bytes] = []
        power_texts = application.power_texts
        current_out_texts = application.current_out_texts
        if len(power_texts) > _TEXT_CACHE_SIZE or len(current_out_texts) > _TEXT_CACHE_SIZE:
            power_texts.clear()
            current_out_texts.clear()
        packets = retransmitted = reports = invalid = duplicates = readings = out_of_range = 0
        length = len(body)
        start = position + 3
        while start < length:
            data_start = start + HEADER_BYTES
            if data_start > length:
                self.truncated_packets += 1
                break
            end = data_start + body[start + 6]
            if end > length:
                self.truncated_packets += 1
                break
            raw = body[start:end]
            raws.append(raw)
            if raw in previous:
                retransmitted += 1
                start = end
                continue
            packets += 1
            packet_type = body[start]
            node_id = (body[start + 1] << 8) | body[start + 2]
            start = end
            if packet_type != POWER_REPORT:
                application.received(
                    gateway_id,
                    packet_type,
                    node_id,
                    raw[HEADER_BYTES:],
                    gateway_slot_counter,
                    received_at,
                    out,
                )
                continue
            # -- a power report: LineApplication's arithmetic, inline (see module docstring)
            if end - data_start < POWER_REPORT_BYTES:
                invalid += 1
                continue
            slot_counter = (body[data_start + 10] << 8) | body[data_start + 11]
            slot_number = slot_counter & 0x3FFF
            if slot_number >= SLOTS_PER_EPOCH:
                invalid += 1
                continue
            reports += 1
            if not emit:
                continue
            elapsed = (gateway_slots - (slot_counter >> 14) * SLOTS_PER_EPOCH - slot_number) % SLOT_CYCLE
            if elapsed > SLOT_CYCLE - FUTURE_TOLERANCE_SLOTS:
                elapsed -= SLOT_CYCLE
            if received_ms < 0:
                received_ms = application.millis(received_at)
            measured_ms = received_ms - 5 * elapsed  # 5 ms per slot
            recent_key = recent_base | (node_id << 16) | slot_counter
            seen = recent.get(recent_key)
            if seen is not None and -_WINDOW_MS < seen - measured_ms < _WINDOW_MS:
                duplicates += 1
                continue
            recent[recent_key] = measured_ms
            readings += 1
            if (since_ms is not None and measured_ms < since_ms) or (
                until_ms is not None and measured_ms >= until_ms
            ):
                out_of_range += 1
                continue
            key = (gateway_id, node_id)
            seen_node = activity.get(key)  # `application.count_report(key, measured_ms)`, inline
            if seen_node is None:
                activity[key] = [measured_ms, measured_ms, 1]
            else:
                seen_node[2] += 1
                if measured_ms > seen_node[1]:
                    seen_node[1] = measured_ms
                elif measured_ms < seen_node[0]:
                    seen_node[0] = measured_ms
            prefix = fixed.get(key)
            if prefix is None:
                application.place(key, measured_ms, power_report_values(body, data_start))
                continue
            # `optimizer_fields(*power_report_values(body, data_start))`, inline: the same
            # texts from the same tables (a test holds the two to each other).
            voltage_in = (body[data_start] << 4) | (body[data_start + 1] >> 4)
            current_in = (body[data_start + 4] << 4) | (body[data_start + 5] >> 4)
            duty_cycle = body[data_start + 3]
            temperature = ((body[data_start + 5] & 0x0F) << 8) | body[data_start + 6]
            if temperature & 0x800:
                temperature -= 0x1000
            current_key = (current_in << 8) | duty_cycle
            current_out = current_out_texts.get(current_key)
            if current_out is None:
                current_out = current_out_texts[current_key] = current_out_text(current_in, duty_cycle)
            product = voltage_in * current_in
            power = power_texts.get(product)
            if power is None:
                power = power_texts[product] = power_text(voltage_in, current_in)
            if samples is not None:  # `LineApplication.emit_line`'s sample, inline
                samples.append(
                    Sample(
                        gateway_id,
                        node_id,
                        application.fixed_address[key],
                        measured_ms,
                        power_value(voltage_in, current_in),
                        body[data_start + 12],
                        temperature / 10,
                    )
                )
            append_line(
                f"{prefix} {VOLTAGE_IN[voltage_in]}"
                f"{VOLTAGE_OUT[((body[data_start + 1] & 0x0F) << 8) | body[data_start + 2]]}"
                f"{CURRENT_IN[current_in]}{current_out}{power}"
                f"{DUTY_CYCLE[duty_cycle]}{TEMPERATURE[temperature + 0x800]}rssi={body[data_start + 12]}i"
                f" {measured_ms}"
            )
        if raws:
            self._previous_raw[gateway_id] = raws
        self.packets += packets
        self.retransmitted_packets += retransmitted
        application.power_reports += reports
        application.invalid_power_reports += invalid
        application.duplicate_reports += duplicates
        application.readings += readings
        application.out_of_range += out_of_range


def sample(gateway_id: int, node_id: int, address: bytes | None, measured_ms: int, values: Values) -> Sample:
    """A reading's energy sample from its raw values (`optimizer_fields` order), as
    `Sample.of` makes it from a `PowerReport`."""
    voltage_in, _voltage_out, _duty, current_in, temperature, rssi = values
    return Sample(
        gateway_id, node_id, address, measured_ms, power_value(voltage_in, current_in), rssi, temperature / 10
    )


def line_stack(application: LineApplication) -> Stack:
    """The canonical stack with the fast lane's transport."""
    stack = Stack(application=application)
    stack.transport = LineTransport(application)
    return stack
