"""`recorder backfill`: replay recorded traffic into InfluxDB, idempotently and fast.

Inputs are files or directories (walked; the run archive's `YYYY/MM/DD/...cap.gz` layout works
as is), optionally gzip-compressed, in one of three formats, detected from the content unless
given: capture files, raw byte dumps, and the JSON lines `taptap observe` prints.

Identity: every reading is tagged with the barcode valid at its *measurement* time, from the
state database's history plus everything the files themselves reveal (a node table at the end
of a file names the nodes of the readings before it). Readings of nodes not known yet are held
in memory until their mapping turns up, so one pass usually suffices; when the database already
knows history inside the input's period, a first pass collects the files' identity before any
point is written (`Backfill._needs_first_pass`).

Idempotency: the same input always yields the same points (same series, same timestamps), so a
second backfill, or a backfill over a period `recorder run` already recorded from the same bytes,
leaves one copy of each point. (Labels are the current ones: relabelled optimizers get points
under their new tags.)

Speed: power reports take the fast lane in `recorder.replay`; a writer thread sends large
batches while decoding goes on; and for large inputs a child process reads the files and
delimits frames ahead of the decoder when a core is spare for it (`recorder.readahead`).
A file that cannot be read is reported with its name and the offset where it failed, skipped,
and the run goes on; the exit code says something was skipped.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from recorder.archive import archive_files
from recorder.capture import CaptureReader
from recorder.config import Settings
from recorder.errors import CaptureFormatError, RecorderError, SourceError
from recorder.identity import IdentityMap
from recorder.observer import MappingLearned, Observer, Output
from recorder.protocol.barcode import address_from_barcode, barcode_from_address, parse_long_address
from recorder.protocol.events import PowerReport
from recorder.readahead import (
    FileDone,
    Frames,
    FrameStream,
    open_maybe_gzip,
    read_frames,
    read_frames_in_child,
)
from recorder.replay import LineApplication, line_stack
from recorder.sinks.influx import BadData, LineWriter, RetryLater, send_batch
from recorder.sinks.points import PointIdentity, report_values
from recorder.storage.state import Labels, StateStore
from recorder.timestamps import to_millis

log = logging.getLogger(__name__)

FORMATS = ("capture", "raw", "taptap-json")
# Bus input from which reading ahead in a child process pays for its start-up (~2 days of capture).
READ_AHEAD_BYTES = 16_000_000


def read_ahead_pays(bus_bytes: int, cores: int, database_here: bool) -> bool:
    """Whether the read-ahead child should run (see `recorder.readahead`).

    Measured on a 2-core machine with a simulated week: with InfluxDB elsewhere (a dry run) the
    child makes the backfill about 30 % faster; with InfluxDB on the same two cores it makes it
    3-7 % slower, because the machine is then CPU-bound and the child costs about 15 % more CPU
    in all (frames cross a process boundary). So: a large input, and a core to spare for it.
    """
    if bus_bytes < READ_AHEAD_BYTES or cores < 2:
        return False
    return cores >= 4 or not database_here


_SUFFIXES = (".cap.gz", ".cap", ".bin", ".raw", ".dump", ".json", ".jsonl", ".log", ".gz")
_NO_UNKNOWN = b"\x00\x00\x00"


class SkippedFile(RecorderError):
    """A file we could not (fully) read; carries where it failed."""


@dataclass
class InputFile:
    path: Path
    format: str
    size: int
    order: tuple[int, str] = (0, "")  # capture files sort by their first record's time


@dataclass
class Summary:
    files: int = 0
    files_done: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    bytes_total: int = 0
    bytes_done: int = 0
    readings: int = 0
    points: int = 0
    unresolved: int = 0
    dropped_unresolved: int = 0
    out_of_range: int = 0
    rejected: int = 0
    mappings_learned: int = 0
    seconds: float = 0.0

    def text(self) -> str:
        rate = self.points / self.seconds if self.seconds else 0.0
        dropped = f" ({self.dropped_unresolved} dropped)" if self.dropped_unresolved else ""
        lines = [
            f"backfill: {self.files_done}/{self.files} files, {self.bytes_done / 1e6:.1f} MB, "
            f"{self.readings} readings, {self.points} points written in {self.seconds:.1f} s "
            f"({rate:,.0f} points/s)",
            f"  identity: {self.mappings_learned} mappings learned from the files; "
            f"{self.unresolved} readings without a barcode{dropped}",
        ]
        if self.out_of_range:
            lines.append(f"  {self.out_of_range} readings outside --since/--until")
        if self.rejected:
            lines.append(f"  {self.rejected} points rejected by InfluxDB (see the log)")
        for path, reason in self.skipped:
            lines.append(f"  skipped {path}: {reason}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Finding and recognising files


def detect_format(path: Path) -> str:
    """capture, raw or taptap-json, from the first bytes. Raises SkippedFile if none fits."""
    try:
        with path.open("rb") as stream:
            head = stream.read(4096)
    except OSError as error:
        raise SkippedFile(f"cannot read ({error.strerror})") from None
    if not head:
        raise SkippedFile("empty file")
    if head[:2] == b"\x1f\x8b":
        if b"taptap capture\x00" in head[:64]:
            return "capture"
        try:
            for _data, at in CaptureReader(path):
                if 2000 <= at.year <= 2200:
                    return "capture"
                break
        except CaptureFormatError:
            pass
        try:
            with gzip.open(path, "rb") as stream:
                head = stream.read(4096)
        except (OSError, EOFError) as error:
            raise SkippedFile(f"corrupt gzip data at offset 0 ({error})") from None
    text = head.lstrip()
    if text.startswith(b"{"):
        return "taptap-json"
    if b"\x7e\x07" in head:
        return "raw"
    raise SkippedFile("not a capture file, a raw bus dump or taptap JSON lines (format not recognised)")


def discover(paths: list[Path], forced_format: str | None) -> tuple[list[InputFile], list[tuple[Path, str]]]:
    """Expand directories, recognise formats, order capture files by time."""
    found: list[InputFile] = []
    problems: list[tuple[Path, str]] = []
    for root in paths:
        if not root.exists():
            problems.append((root, "does not exist"))
            continue
        if root.is_dir():
            archived = {path for _hour, path in archive_files(root)}
            candidates = sorted(
                path
                for path in root.rglob("*")
                if path.is_file() and (path in archived or path.name.endswith(_SUFFIXES))
            )
        else:
            candidates = [root]
        for path in candidates:
            try:
                kind = forced_format or detect_format(path)
                found.append(InputFile(path, kind, path.stat().st_size))
            except SkippedFile as error:
                problems.append((path, str(error)))
    for item in found:
        if item.format == "capture":
            item.order = (_first_record_ms(item.path), str(item.path))
        else:
            item.order = (0, str(item.path))
    # Capture files in time order (an archive's hours, possibly from several directories);
    # other formats keep their own time bases and follow in name order.
    found.sort(key=lambda item: (item.format != "capture", item.order))
    return found, problems


def _first_record_ms(path: Path) -> int:
    try:
        for _data, at in CaptureReader(path):
            return to_millis(at)
    except CaptureFormatError:
        pass
    return 0


# ----------------------------------------------------------------------------------------------
# Reading the formats


@dataclass(frozen=True)
class JsonReport:
    gateway_id: int
    node_id: int
    measured_at: datetime
    report: PowerReport
    long_address: bytes | None


def _identity_of(value: Any) -> tuple[int, bytes | None, str | None]:
    """taptap writes `"gateway": 4609` or `"gateway": {"id": 4609, "address": ...}` (same for node)."""
    if isinstance(value, dict):
        address = value.get("address") or value.get("long_address")
        return (
            int(value["id"]),
            parse_long_address(address) if isinstance(address, str) else None,
            value.get("barcode"),
        )
    return int(value), None, None


def _json_lines(item: InputFile) -> Iterator[tuple[int, dict[str, Any]]]:
    with open_maybe_gzip(item.path) as stream:
        for number, raw in enumerate(stream, 1):
            line = raw.strip()
            if not line:
                continue
            try:
                yield number, json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise SkippedFile(f"line {number}: not JSON ({error})") from None


def _json_report(record: dict[str, Any], number: int) -> JsonReport:
    try:
        gateway_id, _gateway_address, _ = _identity_of(record["gateway"])
        node_id, node_address, node_barcode = _identity_of(record["node"])
        measured_at = datetime.fromisoformat(str(record["timestamp"]))
        if measured_at.tzinfo is None:
            raise ValueError("timestamp without a UTC offset")
        duty = float(record.get("dc_dc_duty_cycle", record.get("duty_cycle", 1.0)))
        current = record["current"] if "current" in record else record["current_in"]
        report = PowerReport(
            voltage_in_raw=round(float(record["voltage_in"]) * 20),
            voltage_out_raw=round(float(record["voltage_out"]) * 10),
            duty_cycle_raw=round(duty * 255),
            current_in_raw=round(float(current) * 200),
            temperature_raw=round(float(record["temperature"]) * 10),
            unknown=_NO_UNKNOWN,
            slot_counter=0,
            rssi=int(record.get("rssi", 0)),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise SkippedFile(f"line {number}: not a taptap power report ({error})") from None
    address = node_address
    if address is None and node_barcode:
        try:
            address = address_from_barcode(str(node_barcode))
        except ValueError:
            address = None
    return JsonReport(gateway_id, node_id, measured_at, report, address)


def _infrastructure_mappings(record: dict[str, Any], number: int) -> list[tuple[int, int, bytes]]:
    mappings = []
    try:
        for gateway_key, nodes in (record.get("nodes") or {}).items():
            for node_key, node in nodes.items():
                mappings.append((int(gateway_key), int(node_key), parse_long_address(node["address"])))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise SkippedFile(f"line {number}: malformed infrastructure_report ({error})") from None
    return mappings


# ----------------------------------------------------------------------------------------------
# Writing


class _WriterThread(threading.Thread):
    """Sends queued batches; decoding continues meanwhile. Waits out InfluxDB outages (bounded)."""

    def __init__(self, writer: LineWriter, summary: Summary, give_up_after: float = 600.0) -> None:
        super().__init__(name="backfill-writer", daemon=True)
        self.writer = writer
        self.summary = summary
        self.queue: queue.Queue[list[str] | None] = queue.Queue(maxsize=4)
        self.give_up_after = give_up_after
        self.error: str | None = None

    def run(self) -> None:
        while True:
            batch = self.queue.get()
            if batch is None:
                return
            if self.error is None:
                self._send(batch)

    def _send(self, lines: list[str]) -> None:
        started = time.monotonic()
        delay = 1.0
        while True:
            try:
                try:
                    self.writer.write(lines)
                    written = len(lines)
                except BadData:  # find the offending lines: send_batch bisects and parks them
                    written = len(send_batch(self.writer, list(enumerate(lines)), self._reject).written)
                self.summary.points += written
                return
            except RetryLater as error:
                # Re-sending lines that already went in is harmless: points are idempotent.
                if time.monotonic() - started > self.give_up_after:
                    self.error = (
                        f"{error}; gave up after {self.give_up_after:.0f} s (backfill is safe to re-run)"
                    )
                    return
                log.warning("%s; retrying in %.0f s", error, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _reject(self, _index: int, _line: str, _error: str) -> None:
        self.summary.rejected += 1  # send_batch has logged the line and the reason

    def submit(self, lines: list[str]) -> None:
        if self.error is not None:
            raise RecorderError(self.error)
        self.queue.put(lines)

    def finish(self) -> None:
        self.queue.put(None)
        self.join()
        if self.error is not None:
            raise RecorderError(self.error)


# ----------------------------------------------------------------------------------------------
# The run


@dataclass
class BackfillOptions:
    paths: list[Path]
    format: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    raw_start: datetime | None = None
    batch_size: int = 20_000
    on_unresolved: str = "write"
    persist_identity: bool = True
    two_pass: bool | None = None  # None: decide (see Backfill._needs_first_pass)
    read_ahead: bool | None = None  # a child process reads and delimits frames; None: decide
    database_here: bool = True  # InfluxDB shares this machine's cores (for deciding read_ahead)


def _until_done(frames: Iterator[Frames | FileDone], done: FileDone | None = None) -> Iterator[Frames]:
    """The current file's frame batches; its `FileDone` is copied into `done`."""
    for item in frames:
        if isinstance(item, FileDone):
            if done is not None:
                done.error, done.truncated = item.error, item.truncated
            return
        yield item


class Backfill:
    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        writer: LineWriter,
        options: BackfillOptions,
        progress: Callable[[Summary, bool], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.writer = writer
        self.options = options
        self.summary = Summary()
        self.progress = progress or (lambda _summary, _final: None)
        self._labels: dict[bytes, Labels] = {}
        self.passes = 0
        self.activity: dict[tuple[int, int], list[int]] = {}  # for `nodes list`'s LAST REPORT

    def run(self) -> Summary:
        started = time.monotonic()
        files, problems = discover(self.options.paths, self.options.format)
        self.summary.files = len(files) + len(problems)
        self.summary.skipped.extend(problems)
        self.summary.bytes_total = sum(item.size for item in files)
        identities = self.store.identity_map()
        gateways = self.store.gateway_addresses()
        self._labels = self.store.labels()
        learned: list[Output] = []
        two_pass = self.options.two_pass
        if two_pass is None:
            two_pass = self._needs_first_pass(files)
        if two_pass:
            learned += self._learn_identity(files, identities, gateways)
        writer = _WriterThread(self.writer, self.summary)
        writer.start()
        try:
            learned += self._write_points(files, identities, gateways, writer)
        finally:
            writer.finish()
            self.summary.mappings_learned = sum(1 for o in learned if isinstance(o, MappingLearned))
            if self.options.persist_identity and learned:
                self.store.record_outputs(learned)
            if self.options.persist_identity and self.activity:
                self.store.record_activity(self.activity)
            self.summary.seconds = time.monotonic() - started
            self.progress(self.summary, True)
        return self.summary

    def _needs_first_pass(self, files: list[InputFile]) -> bool:
        """One pass suffices when identity evidence in the files can only *add* to history.

        That holds when the state database knows no mapping that starts at or after the
        earliest time in the input: every mapping the files reveal then starts after every
        known one, so no reading already turned into a point would resolve differently once
        it is learned (readings of still-unknown nodes are held until the end). Otherwise a
        first pass collects the files' identity before any point is written. Raw dumps and
        taptap logs have no cheap "earliest time" and always get the first pass.
        """
        if any(item.format != "capture" for item in files):
            return True
        earliest = min((item.order[0] for item in files), default=0)
        latest_known = self.store.mapping_version()[2]
        return latest_known >= earliest

    def _tags(self, gateway_id: int, node_id: int, address: bytes | None) -> PointIdentity:
        labels = self._labels.get(address) if address else None
        return PointIdentity(
            gateway=str(gateway_id),
            node_id=node_id,
            barcode=barcode_from_address(address) if address else None,
            name=labels.name if labels else None,
            string=labels.string if labels else None,
        )

    def _application(self, identities: IdentityMap, observer: Observer, *, emit: bool) -> LineApplication:
        options = self.options
        return LineApplication(
            identities,
            self._tags,
            observer,
            emit=emit,
            since_ms=to_millis(options.since) if options.since else None,
            until_ms=to_millis(options.until) if options.until else None,
        )

    def _frames(self, files: list[InputFile]) -> contextlib.closing[FrameStream]:
        """The bus files' frame bodies, read ahead in a child process when that pays off."""
        bus_files = [item for item in files if item.format != "taptap-json"]
        read_ahead = self.options.read_ahead
        if read_ahead is None:
            read_ahead = read_ahead_pays(
                sum(i.size for i in bus_files), os.cpu_count() or 1, self.options.database_here
            )
        reader = read_frames_in_child if read_ahead and bus_files else read_frames
        return contextlib.closing(reader(bus_files, self.options.raw_start))

    # First pass: identity only -------------------------------------------------------------

    def _learn_identity(
        self, files: list[InputFile], identities: IdentityMap, gateways: dict[int, bytes]
    ) -> list[Output]:
        self.passes += 1
        learned: list[Output] = []
        application = self._application(identities, Observer(identities, gateways), emit=False)
        stack = line_stack(application)
        previous_format = None
        with self._frames(files) as frames:
            for item in files:
                if item.format == "taptap-json":
                    with contextlib.suppress(SkippedFile):  # reported by the second pass
                        learned.extend(self._json_identity(item, identities))
                    continue
                if item.format == "raw" or previous_format == "raw":
                    # Capture files continue each other (the archive rotates mid-stream); raw dumps do not.
                    application = self._application(identities, Observer(identities, gateways), emit=False)
                    stack = line_stack(application)
                previous_format = item.format
                # (Unreadable parts are reported by the second pass; what came before counts.)
                for batch in _until_done(frames):
                    application.observe(stack.feed_frames(batch.bodies, batch.times))
                learned.extend(application.learned)
                application.learned = []
        return learned

    def _json_identity(self, item: InputFile, identities: IdentityMap) -> list[Output]:
        learned: list[Output] = []
        last_time: datetime | None = None
        waiting: list[tuple[int, int, bytes]] = []  # mappings seen before any timestamp
        for number, record in _json_lines(item):
            kind = record.get("event_type") or record.get("type")
            if kind == "infrastructure_report":
                for gateway_id, node_id, address in _infrastructure_mappings(record, number):
                    if last_time is None:
                        waiting.append((gateway_id, node_id, address))
                    else:
                        learned.extend(self._learn(identities, gateway_id, node_id, address, last_time))
            elif kind == "power_report":
                report = _json_report(record, number)
                last_time = report.measured_at
                for gateway_id, node_id, address in waiting:
                    learned.extend(self._learn(identities, gateway_id, node_id, address, last_time))
                waiting = []
                if report.long_address is not None:
                    learned.extend(
                        self._learn(
                            identities, report.gateway_id, report.node_id, report.long_address, last_time
                        )
                    )
        return learned

    @staticmethod
    def _learn(
        identities: IdentityMap, gateway_id: int, node_id: int, address: bytes, at: datetime
    ) -> list[Output]:
        changed, previous = identities.learn((gateway_id, node_id), address, "import", at)
        return [MappingLearned(gateway_id, node_id, address, "import", at, previous)] if changed else []

    # The pass that writes --------------------------------------------------------------------

    def _write_points(
        self,
        files: list[InputFile],
        identities: IdentityMap,
        gateways: dict[int, bytes],
        writer: _WriterThread,
    ) -> list[Output]:
        self.passes += 1
        application = self._application(identities, Observer(identities, gateways), emit=True)
        self.activity = application.activity
        stack = line_stack(application)
        previous_format = None
        last_progress = time.monotonic()
        with self._frames(files) as frames:
            for item in files:
                if item.format == "taptap-json":
                    try:
                        self._json_points(item, application)
                    except (SkippedFile, OSError, EOFError) as error:
                        self.summary.skipped.append((item.path, str(error)))
                else:
                    if item.format == "raw" or previous_format == "raw":
                        # A new stream: fresh decoder state; the application's caches carry on.
                        application.observer = Observer(identities, gateways)
                        stack = line_stack(application)
                    previous_format = item.format
                    done = FileDone(None)
                    for batch in _until_done(frames, done):
                        application.observe(stack.feed_frames(batch.bodies, batch.times))
                        if len(application.lines) >= self.options.batch_size:
                            writer.submit(application.lines)
                            application.lines = []
                            now = time.monotonic()
                            if now - last_progress >= 0.5:
                                last_progress = now
                                self._count(application)
                                self.progress(self.summary, False)
                    if done.truncated:
                        log.warning(
                            "%s ends mid-record (cut short while writing?); kept what was there",
                            item.path,
                        )
                    if done.error is not None:
                        self.summary.skipped.append((item.path, done.error))
                self.summary.files_done += 1
                self.summary.bytes_done += item.size
        written, dropped = application.flush_unresolved(self.options.on_unresolved == "write")
        self.summary.unresolved = written + dropped
        self.summary.dropped_unresolved = dropped
        if application.lines:
            writer.submit(application.lines)
            application.lines = []
        self._count(application)
        return application.learned

    def _count(self, application: LineApplication) -> None:
        self.summary.readings = application.readings
        self.summary.out_of_range = application.out_of_range

    def _json_points(self, item: InputFile, application: LineApplication) -> None:
        for number, record in _json_lines(item):
            if (record.get("event_type") or record.get("type")) != "power_report":
                continue
            json_report = _json_report(record, number)
            report = json_report.report
            measured_ms = to_millis(json_report.measured_at)
            application.readings += 1
            options = self.options
            if (options.since and json_report.measured_at < options.since) or (
                options.until and json_report.measured_at >= options.until
            ):
                application.out_of_range += 1
                continue
            values = report_values(report)
            key = (json_report.gateway_id, json_report.node_id)
            application.count_report(key, measured_ms)
            application.place(key, measured_ms, values)


def terminal_progress(stream: TextIO) -> Callable[[Summary, bool], None]:
    """A progress line on a terminal, plain log lines every 10 s otherwise."""
    started = time.monotonic()
    last_log = [started]
    interactive = stream.isatty()

    def show(summary: Summary, final: bool) -> None:
        elapsed = max(time.monotonic() - started, 1e-6)
        rate = summary.points / elapsed
        fraction = summary.bytes_done / summary.bytes_total if summary.bytes_total else 0.0
        eta = (elapsed / fraction - elapsed) if 0 < fraction < 1 else 0.0
        text = (
            f"files {summary.files_done}/{summary.files}  {summary.bytes_done / 1e6:.1f}/"
            f"{summary.bytes_total / 1e6:.1f} MB  readings {summary.readings:,}  {rate:,.0f} points/s"
            + (f"  ETA {eta:.0f} s" if eta else "")
        )
        if interactive:
            stream.write("\r" + text.ljust(100) + ("\n" if final else ""))
            stream.flush()
        elif final or time.monotonic() - last_log[0] >= 10:
            last_log[0] = time.monotonic()
            log.info("backfill progress: %s", text)

    return show


def check_format(value: str | None) -> str | None:
    if value is not None and value not in FORMATS:
        raise SourceError(f"--format: {value!r} is not one of {', '.join(FORMATS)}")
    return value
