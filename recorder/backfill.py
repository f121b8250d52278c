"""`recorder backfill`: replay recorded traffic into InfluxDB, idempotently and fast.

Inputs are files or directories (walked; the run archive's `YYYY/MM/DD/...cap.gz` layout works
as is), optionally gzip-compressed, in one of three formats, detected from the content unless
given: capture files, raw byte dumps, and the JSON lines `taptap observe` prints (every shape
taptap's versions print, recognised line by line: `recorder.taptap_json`).

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

Daily energy: every reading that becomes a point is also integrated (`recorder.energy.ReplayEnergy`,
fed once per batch of frames and once per taptap file), and at the end of the input the
`tigo_energy` point of every local day it replayed is written: the same points `recorder run`
writes for the same readings, with the same `timezone` and `energy_max_gap` settings. A day the
input covers only in part gets the energy of that part (see the README). The state database's
energy tables are `run`'s and are left alone.

Speed: power reports take the fast lane in `recorder.replay`; a writer thread sends large
batches while decoding goes on; and for large inputs a child process reads the files and
delimits frames ahead of the decoder when a core is spare for it (`recorder.readahead`).
A file that cannot be read is reported with its name and the offset where it failed, skipped,
and the run goes on; the exit code says something was skipped. So is a file with bytes and
nothing in them for us: a bus file without a single frame (`sources.nothing_decoded`, the rule
`observe` and `run` apply to a finite source too), a JSON file without a single line of a
taptap shape. A file of frames and no reading is not an error (a night's traffic is polls).
taptap JSON lines of no known shape inside a file that has others are left out, counted, and
the summary names the first (a log cut short mid-line ends in one); they do not change the
exit code.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import queue
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

from recorder import taptap_json
from recorder.archive import archive_files
from recorder.capture import CaptureReader
from recorder.config import Settings
from recorder.energy import ReplayEnergy
from recorder.errors import CaptureFormatError, RecorderError, SourceError
from recorder.identity import IdentityMap
from recorder.observer import SOURCE_IMPORT, MappingLearned, Observer, Output
from recorder.protocol.barcode import barcode_from_address
from recorder.readahead import (
    FileDone,
    Frames,
    FrameStream,
    read_frames,
    read_frames_in_child,
)
from recorder.replay import LineApplication, line_stack
from recorder.sinks.influx import BadData, LineWriter, RetryLater, send_batch
from recorder.sinks.points import PointIdentity, energy_line
from recorder.sources import describe_size, nothing_decoded
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
    energy_days: list[str] = field(default_factory=list)  # local days whose tigo_energy was written
    energy_points: int = 0  # tigo_energy points written (not counted in `points`)
    unrecognised_lines: int = 0  # taptap JSON lines of no shape we know, left out
    first_unrecognised: str | None = None  # where the first one is, and why
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
        if self.energy_days:
            days = self.energy_days
            span = days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"
            count = f"{self.energy_points} tigo_energy points"
            lines.append(f"  daily energy: {count} written for {len(days)} day(s): {span}")
        if self.out_of_range:
            lines.append(f"  {self.out_of_range} readings outside --since/--until")
        if self.rejected:
            lines.append(f"  {self.rejected} points rejected by InfluxDB (see the log)")
        if self.unrecognised_lines:
            lines.append(
                f"  {self.unrecognised_lines} line{'s' if self.unrecognised_lines > 1 else ''} "
                "not recognised as taptap JSON, left out "
                f"(the first: {self.first_unrecognised})"
            )
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
# Writing


class Interrupted(RecorderError):
    """SIGINT/SIGTERM stopped the backfill; says how far it got. Exit 130 or 143."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Stopped(Exception):
    """Raised inside the run when a stop was asked for; `Backfill.run` turns it into Interrupted."""


class EnergyLines(list[str]):
    """A batch of `tigo_energy` lines (counted apart from the readings' points)."""


class _WriterThread(threading.Thread):
    """Sends queued batches through the `LineWriter`; decoding continues meanwhile.

    Waits out an unavailable InfluxDB (bounded by `give_up_after`), but not a configuration
    problem (credentials, database): that ends the backfill at once, since nobody is there to
    fix it while it waits. A stop request ends every wait within a fraction of a second.
    """

    def __init__(
        self, writer: LineWriter, summary: Summary, stop: threading.Event, give_up_after: float = 600.0
    ) -> None:
        super().__init__(name="backfill-writer", daemon=True)
        self.writer = writer
        self.summary = summary
        self.stop = stop
        self.queue: queue.Queue[list[str] | None] = queue.Queue(maxsize=4)
        self.give_up_after = give_up_after
        self.error: str | None = None
        self._closed = threading.Event()

    def run(self) -> None:
        try:
            while not self._closed.is_set():
                try:
                    batch = self.queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                if batch is None:
                    return
                if self.error is None and not self.stop.is_set():
                    self._send(batch)
        except Exception as error:  # a bug must end the backfill with a message, not hang it
            log.exception("the backfill's writer failed")
            self.error = f"writing to InfluxDB failed: {error}"

    def _send(self, lines: list[str]) -> None:
        started = time.monotonic()
        delay = 1.0
        # Lines InfluxDB refused (send_batch has logged each with the reason), by index: a retry
        # that interrupts the bisection sends the batch again without them, and each is counted
        # once, when the batch is done.
        rejected: set[int] = set()

        def reject(index: int, _line: str, _error: str) -> None:
            rejected.add(index)

        while True:
            try:
                written = None
                if not rejected:
                    with contextlib.suppress(BadData):
                        self.writer.write(lines)
                        written = len(lines)
                if written is None:  # bad lines in there: send_batch bisects and parks them
                    remaining = [(index, line) for index, line in enumerate(lines) if index not in rejected]
                    written = len(send_batch(self.writer, remaining, reject).written)
                if isinstance(lines, EnergyLines):
                    self.summary.energy_points += written
                else:
                    self.summary.points += written
                self.summary.rejected += len(rejected)
                return
            except RetryLater as error:
                if error.configuration:
                    self.error = str(error)
                    return
                # Re-sending lines that already went in is harmless: points are idempotent.
                if time.monotonic() - started > self.give_up_after:
                    self.summary.rejected += len(rejected)
                    self.error = (
                        f"{error}; gave up after {self.give_up_after:.0f} s (backfill is safe to re-run)"
                    )
                    return
                log.warning("%s; retrying in %.0f s", error, delay)
                if self.stop.wait(delay):
                    return
                delay = min(delay * 2, 30.0)

    def submit(self, lines: list[str] | None) -> None:
        """Queue a batch (None: the end). Raises RecorderError after a write error, _Stopped on a stop."""
        while True:
            if self.error is not None:
                raise RecorderError(self.error)
            if self.stop.is_set():
                raise _Stopped
            try:
                self.queue.put(lines, timeout=0.2)
                return
            except queue.Full:
                if not self.is_alive():
                    raise RecorderError("the backfill's writer ended unexpectedly") from None

    def finish(self) -> None:
        """Wait until everything queued is written (or a stop is asked for)."""
        self.submit(None)
        while self.is_alive():
            self.join(0.2)
            if self.stop.is_set():
                raise _Stopped
        if self.error is not None:
            raise RecorderError(self.error)

    def close(self, wait: float = 1.0) -> None:
        """End the thread without waiting for queued batches (after an error or a stop)."""
        self._closed.set()
        self.join(wait)  # a request in flight may outlast this; the thread is a daemon


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
                done.error, done.truncated, done.bus_bytes = item.error, item.truncated, item.bus_bytes
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
        self._stop = threading.Event()
        self._stop_exit_code = 130
        self._learned: list[Output] = []  # identity learned so far (saved however the run ends)
        self._application: LineApplication | None = None  # the pass in progress

    def stop(self, exit_code: int = 130) -> None:
        """Ask the run to end soon (signal handlers call this): it raises `Interrupted`, having
        saved the identity learned so far. 130 for SIGINT, 143 for SIGTERM."""
        self._stop_exit_code = exit_code
        self._stop.set()

    def run(self) -> Summary:
        started = time.monotonic()
        files, problems = discover(self.options.paths, self.options.format)
        self.summary.files = len(files) + len(problems)
        self.summary.skipped.extend(problems)
        self.summary.bytes_total = sum(item.size for item in files)
        identities = self.store.identity_map()
        gateways = self.store.gateway_addresses()
        self._labels = self.store.labels()
        self._check_destination()
        two_pass = self.options.two_pass
        if two_pass is None:
            two_pass = self._needs_first_pass(files)
        writer = _WriterThread(self.writer, self.summary, self._stop)
        writer.start()
        stopped = False
        try:
            if two_pass:
                self._learn_identity(files, identities, gateways)
            self._write_points(files, identities, gateways, writer)
            writer.finish()
        except _Stopped:
            stopped = True
        finally:
            writer.close()
            self._harvest()
            learned = self._learned
            self.summary.mappings_learned = sum(1 for o in learned if isinstance(o, MappingLearned))
            if self.options.persist_identity and learned:
                self.store.record_outputs(learned)
            if self.options.persist_identity and self.activity:
                self.store.record_activity(self.activity)
            self.summary.seconds = time.monotonic() - started
            self.progress(self.summary, True)
        if stopped:
            raise Interrupted(
                f"interrupted: {self.summary.points} points written of {self.summary.readings} read; "
                "run the same command again to finish (nothing is doubled)",
                self._stop_exit_code,
            )
        return self.summary

    def _check_destination(self) -> None:
        """Fail fast on what only a person can fix (credentials, database, retention policy):
        an empty write checks them before hours of decoding. An unreachable server is waited for."""
        try:
            self.writer.write([])
        except RetryLater as error:
            if error.configuration:
                raise RecorderError(str(error)) from None
            log.warning("%s; the backfill starts anyway and waits for it while writing", error)

    def _check_stop(self, application: LineApplication) -> None:
        if self._stop.is_set():
            self._count(application)
            raise _Stopped

    def _harvest(self) -> None:
        """Move the identity the pass in progress has learned into `_learned`."""
        if self._application is not None:
            self._learned.extend(self._application.learned)
            self._application.learned = []

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
            site=self.settings.site,
        )

    def _new_application(self, identities: IdentityMap, observer: Observer, *, emit: bool) -> LineApplication:
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
    ) -> None:
        self.passes += 1
        learned = self._learned
        application = self._application = self._new_application(
            identities, Observer(identities, gateways), emit=False
        )
        stack = line_stack(application)
        previous_format = None
        with self._frames(files) as frames:
            for item in files:
                if item.format == "taptap-json":
                    # (What cannot be read is reported by the second pass; what came before counts.)
                    with contextlib.suppress(OSError, EOFError, zlib.error):
                        self._json_file(item, application, write=False)
                    learned.extend(application.learned)
                    application.learned = []
                    continue
                if item.format == "raw" or previous_format == "raw":
                    # Capture files continue each other (the archive rotates mid-stream); raw dumps do not.
                    self._harvest()
                    application = self._application = self._new_application(
                        identities, Observer(identities, gateways), emit=False
                    )
                    stack = line_stack(application)
                previous_format = item.format
                # (Unreadable parts are reported by the second pass; what came before counts.)
                for batch in _until_done(frames):
                    application.observe(stack.feed_frames(batch.bodies, batch.times))
                    self._check_stop(application)
                self._harvest()
        self._application = None

    @staticmethod
    def _learn_json(application: LineApplication, key: tuple[int, int], address: bytes, at: datetime) -> None:
        """A mapping a taptap line revealed; the readings of that node held so far go out."""
        changed, previous = application.identities.learn(key, address, SOURCE_IMPORT, at)
        if changed:
            application.learned.append(MappingLearned(key[0], key[1], address, SOURCE_IMPORT, at, previous))
            application.release(key)

    def _json_file(self, item: InputFile, application: LineApplication, *, write: bool) -> None:
        """One file of taptap JSON lines (see `recorder.taptap_json`): identity, then readings.

        An infrastructure report has no time of its own: its mappings count from the reading
        before it (or, at the top of a file, the first one after it). Raises SkippedFile when
        not one line was recognised; OSError, EOFError or zlib.error when the file cannot be
        read further.
        """
        since_ms, until_ms = application.since_ms, application.until_ms
        last_at: datetime | None = None
        waiting: list[tuple[int, int, bytes]] = []  # mappings seen before any reading
        lines = recognised = unrecognised = 0
        first_unrecognised: tuple[int, str] | None = None
        for number, line in taptap_json.read_lines(item.path):
            self._check_stop(application)
            lines += 1
            if isinstance(line, taptap_json.Unrecognised):
                unrecognised += 1
                first_unrecognised = first_unrecognised or (number, line.reason)
                continue
            recognised += 1
            if isinstance(line, taptap_json.InfrastructureLine):
                for gateway_id, node_id, address in line.nodes:
                    if last_at is None:
                        waiting.append((gateway_id, node_id, address))
                    else:
                        self._learn_json(application, (gateway_id, node_id), address, last_at)
                continue
            key = (line.gateway_id, line.node_id)
            last_at = line.measured_at
            for gateway_id, node_id, address in waiting:
                self._learn_json(application, (gateway_id, node_id), address, last_at)
            waiting = []
            if line.node_address is not None:
                self._learn_json(application, key, line.node_address, last_at)
            if not write:
                continue
            application.readings += 1
            measured_ms = line.measured_ms
            if (since_ms is not None and measured_ms < since_ms) or (
                until_ms is not None and measured_ms >= until_ms
            ):
                application.out_of_range += 1
                continue
            application.count_report(key, measured_ms)
            application.place(key, measured_ms, line.values)
        if not write:
            return
        if lines and not recognised:
            assert first_unrecognised is not None
            raise SkippedFile(
                f"no taptap JSON line recognised in {lines} line{'s' if lines > 1 else ''} "
                f"({describe_size(item.size)}; line "
                f"{first_unrecognised[0]}: {first_unrecognised[1]}): is this the output of `taptap observe`?"
            )
        if unrecognised:
            assert first_unrecognised is not None
            self.summary.unrecognised_lines += unrecognised
            if self.summary.first_unrecognised is None:
                number, reason = first_unrecognised
                self.summary.first_unrecognised = f"{item.path} line {number}: {reason}"
            log.warning(
                "%s: %d lines not recognised as taptap JSON (the first, line %d: %s)",
                item.path,
                unrecognised,
                *first_unrecognised,
            )

    # The pass that writes --------------------------------------------------------------------

    def _write_points(
        self,
        files: list[InputFile],
        identities: IdentityMap,
        gateways: dict[int, bytes],
        writer: _WriterThread,
    ) -> None:
        self.passes += 1
        application = self._application = self._new_application(
            identities, Observer(identities, gateways), emit=True
        )
        self.activity = application.activity
        energy = ReplayEnergy(self.settings.timezone, self.settings.energy_max_gap)
        application.samples = []
        stack = line_stack(application)
        previous_format = None
        last_progress = time.monotonic()
        with self._frames(files) as frames:
            for item in files:
                if item.format == "taptap-json":
                    try:
                        self._json_file(item, application, write=True)
                        energy.feed(application.samples)  # daily energy: this file's readings
                    except SkippedFile as error:
                        self.summary.skipped.append((item.path, str(error)))
                    except (OSError, EOFError, zlib.error) as error:
                        self.summary.skipped.append((item.path, f"cannot be read to its end ({error})"))
                else:
                    if item.format == "raw" or previous_format == "raw":
                        # A new stream: fresh decoder state; the application's caches carry on.
                        application.observer = Observer(identities, gateways)
                        stack = line_stack(application)
                    previous_format = item.format
                    done = FileDone(None)
                    bodies = 0
                    for batch in _until_done(frames, done):
                        bodies += len(batch.bodies)
                        application.observe(stack.feed_frames(batch.bodies, batch.times))
                        energy.feed(application.samples)  # daily energy: this batch's readings
                        self._check_stop(application)
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
                    elif reason := nothing_decoded(done.bus_bytes, bodies, item.format):
                        self.summary.skipped.append((item.path, reason))
                self.summary.files_done += 1
                self.summary.bytes_done += item.size
        written, dropped = application.flush_unresolved(self.options.on_unresolved == "write")
        self.summary.unresolved = written + dropped
        self.summary.dropped_unresolved = dropped
        energy.feed(application.samples)  # daily energy: the end of the input closes every day
        if application.lines:
            writer.submit(application.lines)
            application.lines = []
        writer.submit(self._energy_lines(energy))
        self._count(application)

    def _energy_lines(self, energy: ReplayEnergy) -> EnergyLines:
        """The `tigo_energy` points of the days replayed, with the readings' tags."""
        days = energy.days()
        self.summary.energy_days = sorted({totals.day.isoformat() for totals in days})
        return EnergyLines(
            energy_line(
                self._tags(*totals.key), totals.day_start_ms, totals.energy_wh, totals.uncovered_seconds
            )
            for totals in days
        )

    def _count(self, application: LineApplication) -> None:
        self.summary.readings = application.readings
        self.summary.out_of_range = application.out_of_range


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
