"""`recorder peek`, `recorder observe`, `recorder list-serial-ports`: look at a bus by hand."""

from __future__ import annotations

import logging
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from recorder.cli.common import (
    ConfigOption,
    SourceOption,
    parse_datetime,
    read_only_database,
    settings_for,
    writable_store,
)
from recorder.errors import NothingDecodedError

if TYPE_CHECKING:
    from recorder.config import Settings
    from recorder.observer import Observer, Output
    from recorder.protocol.events import Event
    from recorder.sources import Source

log = logging.getLogger(__name__)


class PeekLevel(StrEnum):
    bytes = "bytes"
    frames = "frames"
    activity = "activity"


def _open(url: str, raw_start: str | None) -> Source:
    from recorder.sources import LiveSource, SourceOptions, open_source

    options = SourceOptions(raw_start=parse_datetime(raw_start, "--start") if raw_start else None)
    source = open_source(url, options)
    source.check()
    if isinstance(source, LiveSource):
        source.fail_fast = True
    return source


StartOption = typer.Option(
    None,
    "--start",
    metavar="TIME",
    help="For raw: sources, the time of the first byte (ISO-8601). "
    "Default: the file's modification time marks the end of the dump.",
)


def peek(
    level: PeekLevel = typer.Argument(
        ..., help="bytes: hex dump; frames: link frames; activity: decoded events."
    ),
    source_url: str = SourceOption,
    limit: int = typer.Option(
        0, "--limit", "-n", min=0, help="Stop after this many lines (0 = no limit).", metavar="N"
    ),
    start: str | None = StartOption,
) -> None:
    """Show what is on the bus, at the level you choose, in human-readable form."""
    from recorder.pipeline import DecodePipeline
    from recorder.protocol.gateway.link import LinkDecoder, frame_from_body
    from recorder.protocol.gateway.transport import frame_type_name

    source = _open(source_url, start)
    printed = 0
    link = LinkDecoder()
    pipeline = DecodePipeline(verbose=True)
    try:
        for data, at in source.chunks():
            if not data:
                continue
            stamp = at.isoformat(timespec="milliseconds")
            lines: list[str] = []
            if level is PeekLevel.bytes:
                lines = [f"{stamp} {data[i : i + 32].hex(' ')}" for i in range(0, len(data), 32)]
            elif level is PeekLevel.frames:
                for body in link.feed(data):
                    frame = frame_from_body(body, at)
                    arrow = "gateway ->" if frame.from_gateway else "-> gateway"
                    lines.append(
                        f"{stamp} {arrow} {frame.gateway_id} {frame_type_name(frame.frame_type)} "
                        f"[{len(frame.payload)} B] {frame.payload.hex(' ')}"
                    )
            else:
                events, readings, learned = pipeline.feed(data, at)
                lines = [f"{stamp} {describe_event(event)}" for event in events]
                lines += [f"{stamp}   => {describe_output(output)}" for output in [*readings, *learned]]
            for line in lines:
                print(line)
                printed += 1
                if limit and printed >= limit:
                    return
    except KeyboardInterrupt:
        pass
    finally:
        source.stop()
    counters = link.counters.as_dict() if level is PeekLevel.frames else pipeline.counters.as_dict()
    if level is not PeekLevel.bytes:
        print(
            "counters: " + ", ".join(f"{name}={value}" for name, value in counters.items() if value),
            file=sys.stderr,
        )


def _text(value: str) -> str:
    """A text from the bus, on one line (gateway versions are CR-separated lines)."""
    return '"' + " ".join(value.split()) + '"'


def _value(name: str, value: object) -> str:
    """A field for people: addresses as barcodes (with the hex), other bytes as hex, texts as text."""
    from recorder.protocol.barcode import describe_address

    if isinstance(value, bytes | bytearray):
        if "address" in name and len(value) == 8:
            return describe_address(bytes(value))
        return value.hex(" ") if value else "(none)"
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, int) and not isinstance(value, bool) and name.endswith("type"):
        return f"0x{value:02X}"
    return str(value)


def describe_event(event: Event) -> str:
    """One event for `peek activity`. Gateways appear as addressed on the bus (their IDs); the
    lines that reveal a gateway's identity give its barcode (`recorder nodes list` shows both)."""
    from recorder.protocol.barcode import describe_address
    from recorder.protocol.events import (
        FrameSeen,
        GatewayIdentityObserved,
        GatewayVersionObserved,
        NodeTablePage,
        PowerReportFields,
        TopologyReportReceived,
    )

    if isinstance(event, FrameSeen):
        arrow = "gateway ->" if event.from_gateway else "-> gateway"
        return f"{arrow} {event.gateway_id} {event.name}: {event.summary}".rstrip(": ")
    if isinstance(event, tuple):  # a power report
        named = PowerReportFields._make(event)
        report = named.report
        return (
            f"  power report gateway {named.gateway_id} node {named.node_id}: "
            f"Vin {report.voltage_in} V, Vout {report.voltage_out} V, Iin {report.current_in} A, "
            f"duty {report.duty_cycle:.3f}, {report.temperature} °C, slot 0x{report.slot_counter:04X}, "
            f"RSSI {report.rssi}"
        )
    if isinstance(event, TopologyReportReceived):
        topology = event.report
        return (
            f"  topology report gateway {event.gateway_id} node {topology.node_id}: "
            f"{describe_address(topology.long_address)}, next hop {topology.next_hop}, RSSI {topology.rssi}"
        )
    if isinstance(event, NodeTablePage):
        entries = ", ".join(f"{entry.node_id}={entry.barcode}" for entry in event.entries) or "end of table"
        return f"  node table page gateway {event.gateway_id} from index {event.start_index}: {entries}"
    if isinstance(event, GatewayIdentityObserved):
        return f"  gateway {event.gateway_id} is {describe_address(event.long_address)}"
    if isinstance(event, GatewayVersionObserved):
        return f"  gateway {event.gateway_id} runs {_text(event.version)}"
    fields = {name: getattr(event, name) for name in event.__dataclass_fields__ if name != "received_at"}
    return f"  {type(event).__name__} " + " ".join(
        f"{key}={_value(key, value)}" for key, value in fields.items()
    )


def describe_output(output: Output) -> str:
    from recorder.observer import MappingLearned, NodeTableAssembled
    from recorder.protocol import units
    from recorder.protocol.barcode import barcode_from_address, describe_address
    from recorder.reading import ReadingFields
    from recorder.timestamps import from_millis

    if isinstance(output, tuple):
        reading = ReadingFields._make(output)
        who = (
            barcode_from_address(reading.long_address)
            if reading.long_address is not None
            else f"node {reading.node_id} (barcode not yet known)"
        )
        measured = from_millis(reading.measured_ms).isoformat(timespec="milliseconds")
        power = units.power(reading.voltage_in_raw, reading.current_in_raw)
        return f"reading {who} measured {measured}: {power} W"
    if isinstance(output, NodeTableAssembled):
        gateway = output.gateway_id
        return f"node table of gateway {gateway} complete: {len(output.entries)} nodes"
    if isinstance(output, MappingLearned):
        return (
            f"gateway {output.gateway_id} node {output.node_id} is "
            f"{describe_address(output.long_address)} (from {output.source})"
        )
    address = describe_address(output.long_address) if output.long_address else "address not heard yet"
    version = f"version {_text(output.version)}" if output.version else "version not heard yet"
    return f"gateway {output.gateway_id}: {address}, {version}"


def observe(
    source_url: str = SourceOption,
    start: str | None = StartOption,
    db: Path | None = typer.Option(
        None,
        "--db",
        help="Use and update this state database (known barcodes, history). Without --db (or "
        "RECORDER_DB), a database named in the configuration file is only read, for its barcodes. "
        "[env var: RECORDER_DB]",
        show_default=False,
        metavar="FILE",
    ),
    config: Path | None = ConfigOption,
) -> None:
    """Decode the bus and print one JSON object per line (power reports, identity, counters)."""
    from recorder.observer import Observer
    from recorder.pipeline import DecodePipeline
    from recorder.protocol.events import TopologyReportReceived
    from recorder.sinks import jsonl
    from recorder.sources import nothing_decoded_from

    settings = settings_for(db, config)
    store = None
    observer = Observer()
    origin = settings.provenance.origins.get("db")
    if origin in ("--db", "RECORDER_DB"):
        store = writable_store(settings)  # asked for by name: use it and record what is heard
        observer = Observer(store.identity_map(), store.gateway_addresses())
    elif origin is not None and settings.database_path.exists():
        observer = _seeded_observer(settings)  # the configured database: look, never write
    source = _open(source_url, start)
    pipeline = DecodePipeline(observer)
    write = sys.stdout.write
    exhausted = False
    try:
        for data, at in source.chunks():
            if not data:
                continue
            events, readings, learned = pipeline.feed(data, at)
            outputs: list[Output] = [*readings, *learned]
            if store is not None and outputs:
                store.record_outputs(outputs)
            for event in events:
                if isinstance(event, TopologyReportReceived):
                    write(jsonl.dumps(jsonl.topology_report_json(event)) + "\n")
            for output in outputs:
                for line in _output_lines(output):
                    write(jsonl.dumps(line) + "\n")
        exhausted = True
    except KeyboardInterrupt:
        pass
    finally:
        source.stop()
    counters = pipeline.counters.as_dict()
    write(jsonl.dumps({"type": "counters", **counters}) + "\n")
    sys.stdout.flush()
    if exhausted and (reason := nothing_decoded_from(source, counters["frames"])):
        raise NothingDecodedError(reason)


def _seeded_observer(settings: Settings) -> Observer:
    """An observer knowing the barcodes in the configured database, read without changing it."""
    from recorder.observer import Observer
    from recorder.storage import queries

    connection = read_only_database(settings)
    observer = Observer(queries.identity_map(connection), queries.gateway_addresses(connection))
    connection.close()
    log.info("barcodes from %s (read only)", settings.database)
    return observer


def _output_lines(output: Output) -> list[dict[str, Any]]:
    from recorder.observer import GatewayLearned, NodeTableAssembled
    from recorder.sinks import jsonl

    if isinstance(output, tuple):  # a reading
        return [jsonl.reading_json(output)]
    if isinstance(output, NodeTableAssembled):
        return [jsonl.node_table_json(output)]
    if isinstance(output, GatewayLearned):
        return jsonl.gateway_json(output)
    return []


def list_serial_ports() -> None:
    """List the serial ports pyserial can see, with their descriptions."""
    from serial.tools import list_ports

    ports = sorted(list_ports.comports(), key=lambda port: port.device)
    if not ports:
        print("no serial ports found (is the RS-485 adapter plugged in?)")
        return
    for port in ports:
        details = [detail for detail in (port.description, port.hwid) if detail and detail != "n/a"]
        print(f"{port.device}\t" + "\t".join(details))
