from __future__ import annotations

from datetime import timedelta

from recorder.observer import MappingLearned, NodeTableAssembled, Observer
from recorder.protocol import encode, units
from recorder.protocol.events import (
    NodeTableEntry,
    NodeTablePage,
    PowerReportReceived,
    TopologyReport,
    TopologyReportReceived,
)
from recorder.protocol.pv import application as app
from recorder.protocol.slots import add_slots
from recorder.protocol.stack import Stack
from recorder.reading import ReadingFields
from recorder.timestamps import to_millis
from tests.helpers import T0, only
from tests.protocol import reference_frames as ref

T0_MS = to_millis(T0)

GATEWAY = 0x1201
ADDRESSES = [bytes.fromhex(f"04C05B400000{n:04X}") for n in range(40)]


def page(requested: int | None, start: int, node_ids: list[int], at_seconds: float = 0) -> NodeTablePage:
    entries = tuple(NodeTableEntry(ADDRESSES[n], n) for n in node_ids)
    return NodeTablePage(GATEWAY, requested, start, entries, T0 + timedelta(seconds=at_seconds))


def report_event(
    node_id: int, report_slot: int, response_slot: int, received_at_seconds: float = 0
) -> PowerReportReceived:
    report = app.power_report_received(
        GATEWAY,
        node_id,
        T0 + timedelta(seconds=received_at_seconds),
        response_slot,
        ref.POWER_REPORT_13[:10] + report_slot.to_bytes(2, "big") + b"\x7e",
    )
    assert report is not None
    return report


def test_node_table_pages_are_assembled_then_trusted() -> None:
    observer = Observer()
    assert observer.feed([page(0, 2, [2, 3, 4]), page(5, 7, [7, 8])]) == ([], [])  # gap 5-6 is normal
    outputs = observer.feed([page(9, 9, [])]).learned
    table = only(outputs, NodeTableAssembled)[0]
    assert [entry.node_id for entry in table.entries] == [2, 3, 4, 7, 8]
    learned = only(outputs, MappingLearned)
    assert [(m.node_id, m.source) for m in learned] == [(n, "node_table") for n in (2, 3, 4, 7, 8)]
    assert observer.resolve(GATEWAY, 7, T0_MS)[0] == ADDRESSES[7]


def test_a_table_joined_midway_is_ignored_until_the_next_one() -> None:
    observer = Observer()
    assert observer.feed([page(9, 9, [9, 10]), page(11, 11, [])]) == ([], [])
    assert observer.counters.ignored_node_table_pages == 2


def test_a_lost_page_costs_only_its_own_entries() -> None:
    # The page for index 4 was lost in the noise; the controller, which got it, asks for 8 next.
    observer = Observer()
    outputs = observer.feed([page(0, 2, [2, 3]), page(8, 8, [8]), page(9, 9, [])]).learned
    (table,) = only(outputs, NodeTableAssembled)
    assert [entry.node_id for entry in table.entries] == [2, 3, 8]
    assert [m.node_id for m in only(outputs, MappingLearned)] == [2, 3, 8]
    assert observer.counters.node_table_jumps == 1
    assert observer.counters.incomplete_node_tables == 0


def test_a_page_going_backwards_without_its_request_ends_the_table() -> None:
    observer = Observer()
    outputs = observer.feed([page(0, 2, [2, 3, 4]), page(None, 3, [3]), page(5, 5, [])]).learned
    assert not only(outputs, NodeTableAssembled)
    assert observer.counters.incomplete_node_tables == 1


def alias_page(requested: int | None, entries: list[tuple[int, int]]) -> NodeTablePage:
    """A page of (node ID, address index) entries in the order the gateway lists them."""
    table = tuple(NodeTableEntry(ADDRESSES[n], node_id) for node_id, n in entries)
    return NodeTablePage(GATEWAY, requested, entries[0][0] if entries else requested or 0, table, T0)


def test_bit_15_alias_listed_after_its_plain_id_and_the_controller_continuing_from_it() -> None:
    """The gateway lists 0x800A right after 0x000A; the controller asks next for 0x000B."""
    observer = Observer()
    first = [(n, n) for n in range(2, 11)] + [(0x800A, 30)]
    outputs = observer.feed(
        [alias_page(0, first), alias_page(0x000B, [(0x000B, 11), (0x000C, 12)]), alias_page(0x000D, [])]
    ).learned
    (table,) = only(outputs, NodeTableAssembled)
    assert {entry.node_id for entry in table.entries} == {*range(2, 13), 0x800A}
    assert observer.resolve(GATEWAY, 0x800A, T0_MS)[0] == ADDRESSES[30]
    counters = observer.counters
    assert counters.incomplete_node_tables == counters.node_table_jumps == 0


def test_a_page_listing_its_aliases_last_is_followed_from_its_highest_plain_id() -> None:
    observer = Observer()
    first = [(n, n) for n in range(2, 14)] + [(0x8005, 31)]  # alias of 5, after the page's plain IDs
    outputs = observer.feed(
        [alias_page(0, first), alias_page(0x000E, [(0x000E, 14)]), alias_page(0x000F, [])]
    ).learned
    assert only(outputs, NodeTableAssembled)
    assert observer.counters.node_table_jumps == 0


def test_an_alias_page_whose_request_was_not_seen_follows_on_by_its_start() -> None:
    observer = Observer()
    first = [(n, n) for n in range(2, 11)] + [(0x800A, 30)]
    outputs = observer.feed(
        [alias_page(0, first), alias_page(None, [(0x000B, 11)]), alias_page(0x000C, [])]
    ).learned
    assert only(outputs, NodeTableAssembled)
    assert observer.counters.incomplete_node_tables == 0


def test_bit_15_alias_is_mapped_to_the_same_long_address() -> None:
    observer = Observer()
    entries = (NodeTableEntry(ADDRESSES[2], 2), NodeTableEntry(ADDRESSES[2], 0x8002))
    outputs = observer.feed([NodeTablePage(GATEWAY, 0, 2, entries, T0), page(0x8003, 0x8003, [])]).learned
    learned = only(outputs, MappingLearned)
    assert [(m.node_id, m.is_alias) for m in learned] == [(2, False), (0x8002, True)]
    assert observer.resolve(GATEWAY, 0x8002, T0_MS)[1] == observer.resolve(GATEWAY, 2, T0_MS)[1]


def test_topology_report_resolves_barcodes_immediately() -> None:
    observer = Observer()
    topology = TopologyReport(0x1234, 6, 1, b"\x00\x02", ADDRESSES[6], 150, b"")
    (reading,) = observer.feed(
        [TopologyReportReceived(GATEWAY, 6, T0, topology), report_event(6, 0x1000, 0x1100)]
    ).readings
    assert ReadingFields._make(reading).long_address == ADDRESSES[6]


def test_measurement_time_comes_from_the_slot_clock() -> None:
    observer = Observer()
    # The response's counter is 4000 slots (20 s) after the report's.
    (reading,) = observer.feed(
        [report_event(2, 0x1000, add_slots(0x1000, 4000), received_at_seconds=30)]
    ).readings
    fields = ReadingFields._make(reading)
    assert fields.measured_ms == T0_MS + 10_000
    assert fields.received_ms == T0_MS + 30_000


def test_duplicate_reports_are_dropped_but_the_counter_repeating_later_is_not() -> None:
    observer = Observer()
    first = report_event(2, 0x1000, 0x1100, received_at_seconds=0)
    again = report_event(2, 0x1000, 0x1120, received_at_seconds=0.16)  # the same report re-delivered
    cycle_later = report_event(2, 0x1000, 0x1100, received_at_seconds=240)  # counter wrapped: new report
    assert len(observer.feed([first, again, cycle_later]).readings) == 2
    assert observer.placement.counters.duplicate_reports == 1


def test_gateway_identity_and_version_through_the_stack() -> None:
    stack, observer = Stack(), Observer()
    outputs = observer.feed(stack.feed(b"".join(ref.ENUMERATION_SEQUENCE), T0)).learned
    assert observer.gateway_addresses[0x1201] == ref.GATEWAY_ADDRESS
    assert observer.gateway_versions[0x1201] == ref.GATEWAY_VERSION
    assert 0x1235 not in observer.gateway_addresses  # the temporary enumeration ID is not a gateway
    assert outputs


def test_readings_carry_input_power_and_output_current() -> None:
    stack, observer = Stack(), Observer()
    data = encode.receive_request(GATEWAY, 1) + encode.receive_response(
        GATEWAY, 0x00FE, 1, 0xE000, [encode.packet(app.POWER_REPORT, 9, ref.POWER_REPORT_15)]
    )
    (reading,) = observer.feed(stack.feed(data, T0)).readings
    fields = ReadingFields._make(reading)
    assert units.power(fields.voltage_in_raw, fields.current_in_raw) == 278.96625
    assert units.current_out(fields.current_in_raw, fields.duty_cycle_raw) == 6.165
