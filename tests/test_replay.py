"""The backfill fast lane writes exactly the lines the canonical pipeline would (`recorder.replay`)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder import replay
from recorder.archive import Archive
from recorder.backfill import Backfill, BackfillOptions
from recorder.config import load_settings
from recorder.energy import DEFAULT_MAX_GAP, ReplayEnergy, Sample
from recorder.identity import IdentityMap
from recorder.observer import MappingLearned, Observer, Reading
from recorder.pipeline import DecodePipeline
from recorder.protocol import encode
from recorder.protocol.barcode import barcode_from_address
from recorder.protocol.pv import application as app
from recorder.protocol.pv.network import encode_packet
from recorder.protocol.stack import Stack
from recorder.replay import LineApplication, line_stack
from recorder.sim.bus import BusSimulation
from recorder.sim.config import SimulationConfig
from recorder.sinks.points import PointIdentity, energy_line, optimizer_line
from recorder.storage.state import StateStore
from recorder.timestamps import to_millis
from tests.protocol import reference_frames as ref


class Collect:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, lines: list[str]) -> None:
        self.lines.extend(lines)

    def close(self) -> None:
        pass


def canonical_lines(records: list[tuple[bytes, datetime]]) -> list[str]:
    """What `recorder run` writes: readings resolved when emitted, unresolved ones held (the
    outbox) until their mapping is learned, the rest written without a barcode at the end; and
    the daily energy of those readings, fed as each becomes ready (`Sample.of`, as run feeds
    them), the `tigo_energy` line of every day at the end."""
    pipeline = DecodePipeline()
    lines: list[str] = []
    held: dict[tuple[int, int], list[Reading]] = {}
    energy = ReplayEnergy(None, DEFAULT_MAX_GAP)

    def line(reading: Reading, barcode: str | None) -> str:
        address = pipeline.observer.resolve(reading.gateway_id, reading.node_id, reading.measured_at)[0]
        energy.feed([Sample.of(replace(reading, long_address=address if barcode else None))])
        return optimizer_line(
            PointIdentity(str(reading.gateway_id), reading.node_id, barcode),
            reading.report,
            reading.measured_at,
        )

    for data, at in records:
        _, outputs = pipeline.feed(data, at)
        for output in outputs:
            if isinstance(output, Reading):
                if output.barcode is None:
                    held.setdefault((output.gateway_id, output.node_id), []).append(output)
                else:
                    lines.append(line(output, output.barcode))
            elif isinstance(output, MappingLearned):
                for reading in held.pop((output.gateway_id, output.node_id), []):
                    lines.append(
                        line(
                            reading,
                            pipeline.observer.resolve(
                                reading.gateway_id, reading.node_id, reading.measured_at
                            )[1],
                        )
                    )
    for waiting in held.values():
        lines.extend(line(reading, None) for reading in waiting)
    for totals in energy.days():
        gateway_id, node_id, address = totals.key
        barcode = barcode_from_address(address) if address else None
        identity = PointIdentity(str(gateway_id), node_id, barcode)
        lines.append(energy_line(identity, totals.day_start_ms, totals.energy_wh, totals.uncovered_seconds))
    return lines


def canonical_activity(records: list[tuple[bytes, datetime]]) -> dict[tuple[int, int], list[int]]:
    """Node activity as `recorder run` records it: from every reading the observer emits."""
    pipeline = DecodePipeline()
    activity: dict[tuple[int, int], list[int]] = {}
    for data, at in records:
        for output in pipeline.feed(data, at)[1]:
            if isinstance(output, Reading):
                ms = to_millis(output.measured_at)
                seen = activity.setdefault((output.gateway_id, output.node_id), [ms, ms, 0])
                seen[0], seen[1], seen[2] = min(seen[0], ms), max(seen[1], ms), seen[2] + 1
    return activity


@pytest.mark.parametrize(
    "changes",
    [
        {"noise": 0.02},
        {"firmware": "4x", "noise": 0.01, "gateways": 2},
        {"reassign": True, "start": datetime.fromisoformat("2025-06-21T10:00:00+00:00")},
        {
            "reassign": True,
            "aliases_last": True,
            "quiet_replacement": True,
            "start": datetime.fromisoformat("2025-06-21T10:00:00+00:00"),
        },  # the replacement is only in a table paged aliases last
        {
            "controller_restart": False,
            "start": datetime.fromisoformat("2025-06-21T03:00:00+00:00"),
        },  # sunrise
    ],
    ids=["noise", "4x two gateways", "reassignment", "alias paging", "identity at sunrise"],
)
@pytest.mark.parametrize("two_pass", [False, True], ids=["one pass", "two passes"])
def test_fast_lane_equals_the_canonical_pipeline(
    tmp_path: Path, changes: dict[str, Any], two_pass: bool
) -> None:
    config = SimulationConfig(duration=timedelta(hours=3), nodes=25, seed=41).with_changes(**changes)
    records = [
        (data, config.start + timedelta(seconds=seconds)) for data, seconds in BusSimulation(config).run()
    ]
    archive = Archive(tmp_path / "archive", retention_days=0)
    for data, at in records:
        archive.write(data, at)
    archive.close()
    expected = canonical_lines(records)
    writer = Collect()
    store = StateStore.open(tmp_path / "state.db")
    backfill = Backfill(
        load_settings({}, environ={}),
        store,
        writer,
        # The two-pass runs read ahead in a child process, the one-pass runs in this process.
        BackfillOptions(
            paths=[tmp_path / "archive"], two_pass=two_pass, batch_size=1000, read_ahead=two_pass
        ),
    )
    backfill.run()
    assert backfill.passes == (2 if two_pass else 1)
    assert len(expected) > 1000
    assert sorted(writer.lines) == sorted(expected)  # the readings' points and the daily energy
    assert sum(line.startswith("tigo_energy,") for line in expected) >= config.nodes
    # nodes list's LAST REPORT and report counts, as `recorder run` would have recorded them
    activity = canonical_activity(records)
    assert backfill.activity == activity
    stored = {
        (row.gateway_id, row.node_id): (to_millis(row.last_report_at), row.report_count)
        for row in store.list_nodes()
        if row.last_report_at is not None
    }
    assert stored == {key: (last, count) for key, (_first, last, count) in activity.items()}


def test_a_database_knowing_later_history_forces_the_first_pass(tmp_path: Path) -> None:
    config = SimulationConfig(duration=timedelta(minutes=20), nodes=5, seed=43)
    archive = Archive(tmp_path / "archive", retention_days=0)
    for data, seconds in BusSimulation(config).run():
        archive.write(data, config.start + timedelta(seconds=seconds))
    archive.close()
    store = StateStore.open(tmp_path / "state.db")
    first = Backfill(
        load_settings({}, environ={}), store, Collect(), BackfillOptions(paths=[tmp_path / "archive"])
    )
    first.run()
    again = Backfill(
        load_settings({}, environ={}), store, Collect(), BackfillOptions(paths=[tmp_path / "archive"])
    )
    again.run()
    assert (first.passes, again.passes) == (1, 2)  # the second time, the database knows this period


def _edge_cases() -> bytes:
    """Receive responses the simulator does not produce: truncated packets (inside the header
    and inside the data), a short and an impossible power report, an unknown packet type, and
    a retransmission next to a new packet."""
    good = encode_packet(app.POWER_REPORT, 2, 0x10, 7, ref.POWER_REPORT_13)
    newer = encode_packet(app.POWER_REPORT, 3, 0x11, 8, ref.POWER_REPORT_15)
    short = encode_packet(app.POWER_REPORT, 4, 0x12, 9, ref.POWER_REPORT_13[:12])
    impossible = bytearray(ref.POWER_REPORT_13)
    impossible[10:12] = (0x3F, 0xFF)  # slot number 16383 >= 12000
    unknown = encode_packet(0x7A, 5, 0x13, 9, b"\x01\x02")
    responses = [
        [good, newer[:5]],
        [good, newer, newer[:-2]],
        [short, encode_packet(app.POWER_REPORT, 6, 0x14, 9, bytes(impossible)), unknown],
    ]
    data = b""
    for number, packets in enumerate(responses, 0x20):
        data += encode.receive_request(0x1201, number)
        data += encode.receive_response(0x1201, 0x00EE, number, 0x9000 + number, packets)
    return data


@pytest.mark.parametrize("firmware", ["legacy", "4x"])
def test_fast_lane_counts_exactly_what_the_canonical_stack_counts(tmp_path: Path, firmware: str) -> None:
    """Truncated, retransmitted and invalid packets included: the fused packet loop must not
    change a single counter the status and summaries report."""
    config = SimulationConfig(
        duration=timedelta(hours=2), nodes=20, seed=47, noise=0.03, firmware=firmware, gateways=2
    )
    records = [
        (data, config.start + timedelta(seconds=seconds)) for data, seconds in BusSimulation(config).run()
    ]
    records.append((_edge_cases(), records[-1][1] + timedelta(seconds=1)))
    canonical = Stack()
    for data, at in records:
        canonical.feed(data, at)
    store = StateStore.open(tmp_path / "state.db")
    identities = store.identity_map()
    application = LineApplication(identities, _tags, Observer(identities, {}))
    fast = line_stack(application)
    for start in range(0, len(records), 300):
        application.observe(fast.feed_records(records[start : start + 300]))
    expected = canonical.counters()
    assert expected["truncated_packets"] == 2 and expected["retransmitted_packets"] >= 1
    assert expected["invalid_power_reports"] == 2 and expected["unknown_packet_types"] >= 1
    assert expected["power_reports"] > 1000
    assert fast.counters() == expected
    assert application.readings + application.duplicate_reports == expected["power_reports"]


def _tags(gateway_id: int, node_id: int, address: bytes | None) -> PointIdentity:
    return PointIdentity(str(gateway_id), node_id, None)


@pytest.mark.parametrize("two_pass", [False, True], ids=["one pass", "two passes"])
def test_reading_ahead_in_a_child_process_changes_nothing(tmp_path: Path, two_pass: bool) -> None:
    """Same lines, readings and skipped files (with the same reasons) either way, including a
    file corrupt in the middle, one cut short while being written, and a raw dump."""
    config = SimulationConfig(duration=timedelta(hours=3), nodes=15, seed=53, noise=0.01)
    inputs = tmp_path / "inputs"
    records = []
    archive = Archive(inputs, retention_days=0)
    for data, seconds in BusSimulation(config).run():
        at = config.start + timedelta(seconds=seconds)
        archive.write(data, at)
        records.append(data)
    archive.close()
    files = sorted(inputs.rglob("*.cap.gz"))
    middle = bytearray(files[1].read_bytes())
    middle[len(middle) // 2 : len(middle) // 2 + 40] = b"\x55" * 40
    files[1].write_bytes(bytes(middle))
    files[2].write_bytes(files[2].read_bytes()[:-5000])
    (inputs / "dump.bin").write_bytes(b"".join(records[: len(records) // 4]))

    def backfill(read_ahead: bool) -> tuple[list[str], Any]:
        writer = Collect()
        summary = Backfill(
            load_settings({}, environ={}),
            StateStore.open(tmp_path / f"state-{read_ahead}.db"),
            writer,
            BackfillOptions(
                paths=[inputs],
                read_ahead=read_ahead,
                two_pass=two_pass,
                raw_start=datetime.fromisoformat("2025-06-21T08:00:00+00:00"),
                batch_size=500,
            ),
        ).run()
        return writer.lines, summary

    here, here_summary = backfill(False)
    child, child_summary = backfill(True)
    assert len(here) > 5000
    assert child == here
    assert child_summary.readings == here_summary.readings
    assert [(path, reason) for path, reason in child_summary.skipped] == here_summary.skipped
    assert [path for path, _ in here_summary.skipped] == [files[1]]
    assert "offset" in here_summary.skipped[0][1]


_VALID_REPORTS = st.binary(min_size=13, max_size=15).filter(
    lambda data: (((data[10] << 8) | data[11]) & 0x3FFF) < 12000
)


def _fed_one_by_one(reports: list[bytes]) -> tuple[LineApplication, list[str]]:
    """A known node's reports, each in a response of its own stamped with the report's slot
    counter (measured at one instant): the application that turned them into lines, and the
    lines `optimizer_line` makes of them (a repeated slot counter is a duplicate, dropped)."""
    identities = IdentityMap()
    address = bytes.fromhex("04C05B4000A1B2C3")
    at = datetime.fromisoformat("2025-06-21T12:00:00+00:00")
    identities.learn((0x1201, 7), address, "test", at - timedelta(days=1))
    application = LineApplication(identities, _tags, Observer(identities, {}))
    stack = line_stack(application)
    data = b""
    for number, report in enumerate(reports):
        data += encode.receive_request(0x1201, number & 0xFFFF)
        slot_counter = (report[10] << 8) | report[11]
        packet = encode_packet(app.POWER_REPORT, 7, 0x10, number & 0xFF, report)
        data += encode.receive_response(0x1201, 0x00EE, number & 0xFFFF, slot_counter, [packet])
    application.observe(stack.feed(data, at))
    expected, seen = [], set()
    for report in map(app.decode_power_report, reports):
        assert report is not None
        if report.slot_counter not in seen:
            seen.add(report.slot_counter)
            expected.append(optimizer_line(_tags(0x1201, 7, address), report, at))
    return application, expected


def _next_slot(report: bytes) -> bytes:
    """The same values measured in the next slot."""
    slot = (((report[10] << 8) | report[11]) & 0x3FFF) + 1
    return report[:10] + bytes(((report[10] & 0xC0) | (slot % 12000) >> 8, slot % 12000 & 0xFF)) + report[12:]


@given(reports=st.lists(_VALID_REPORTS, min_size=1, max_size=6))
@settings(max_examples=300, deadline=None)
def test_the_inlined_fields_are_the_canonical_ones(reports: list[bytes]) -> None:
    """The packet loop formats a known node's fields inline (the first report goes through
    `place`), with cached texts for power and current_out; any report's line must be the one
    `optimizer_line` makes (negative temperatures, zero duty cycle, 13-15 byte reports), the
    first time its values are seen and when they repeat."""
    application, expected = _fed_one_by_one(reports + [_next_slot(r) for r in reports])
    assert application.fixed and application.lines == expected


def test_the_field_text_caches_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay, "_TEXT_CACHE_SIZE", 8)
    rng = random.Random(5)
    reports = []
    for _ in range(300):
        report = bytearray(rng.randbytes(13))
        report[10] &= 0x1F  # a valid slot number (< 12000)
        reports.append(bytes(report))
    application, expected = _fed_one_by_one(reports + [_next_slot(r) for r in reports])
    assert len(expected) > 500 and application.lines == expected
    assert 0 < len(application.power_texts) <= 9 and 0 < len(application.current_out_texts) <= 9
