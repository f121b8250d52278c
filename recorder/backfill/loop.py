"""`recorder backfill`: replay recorded traffic into InfluxDB, idempotently and fast.

Inputs are files or directories (walked; the run archive's `YYYY/MM/DD/...cap.gz` layout works
as is), optionally gzip-compressed, in one of three formats, detected from the content unless
given: capture files, raw byte dumps, and the JSON lines `taptap observe` prints (every shape
taptap's versions print, recognised line by line: `recorder.backfill.taptap_json`).

Bus files decode through the same `DecodePipeline` as `recorder run` and `recorder observe`
(protocol stack, observer, placement step), so every reading is the one `run` would have made of
the same bytes; points are formatted by the same `PointFormatter` as `run`'s sender.

Identity: every reading is tagged with the barcode valid at its *measurement* time, from the
state database's history plus everything the files themselves reveal (a node table at the end
of a file names the nodes of the readings before it). Readings of nodes not known yet wait
(`recorder.backfill.held`: in memory, then in a scratch file) until their mapping turns up or the input
ends, so one pass usually suffices; when the database already knows history inside the input's
period, a first pass collects the files' identity before any point is written
(`Backfill._needs_first_pass`). Unlike `run`'s identity hold, the wait is not limited in time:
the whole input is there, and a mapping heard at its end is as good as one heard at its start.

Idempotency: the same input always yields the same points (same series, same timestamps), so a
second backfill, or a backfill over a period `recorder run` already recorded from the same bytes,
leaves one copy of each point. (Labels are the current ones: relabelled optimizers get points
under their new tags.)

Daily energy: every reading that becomes a point is also integrated (`recorder.energy.ReplayEnergy`,
fed from the readings the formatter turns into points, in one place: `_Readings._points`), and
at the end of the input the `tigo_energy` point of every local day it replayed is written: the
same points `recorder run` writes for the same readings, with the same `timezone` and
`energy_max_gap` settings. A day the input covers only in part gets the energy of that part (see
the README). The state database's energy tables are `run`'s and are left alone.

Speed: the pipeline and the formatter work on batches of frames and readings with integer
times and cached texts; a writer thread sends large batches while decoding goes on; and for
large inputs a child process reads the files and delimits frames ahead of the decoder when a
core is spare for it (`recorder.backfill.readahead`).

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
import gc
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

from recorder.backfill import taptap_json
from recorder.backfill.held import HeldReadings
from recorder.backfill.inputs import InputFile, SkippedFile, discover
from recorder.backfill.readahead import (
    FileDone,
    Frames,
    FrameStream,
    read_ahead_pays,
    read_frames,
    read_frames_in_child,
)
from recorder.backfill.writer import EnergyLines, Stopped, WriterThread
from recorder.config import Settings
from recorder.energy import ReplayEnergy, Sample, samples_of
from recorder.errors import RecorderError
from recorder.identity import IdentityMap, NodeKey
from recorder.observer import SOURCE_IMPORT, MappingLearned, Observer, Output
from recorder.pipeline import DecodePipeline
from recorder.reading import LONG_ADDRESS, MEASURED_MS, Activity, Reading, count_activity
from recorder.sinks.influx import LineWriter, RetryLater
from recorder.sinks.points import PointFormatter, PointIdentity, energy_line, point_identity
from recorder.sources import describe_size, nothing_decoded
from recorder.storage.state import Labels, StateStore
from recorder.timestamps import to_millis

log = logging.getLogger(__name__)

# Counters of power reports (or the packets carrying them) that became no reading, as the summary
# names them.
DROPPED_REPORTS = {
    "invalid_power_reports": "invalid",
    "unplaced_reports": "unplaced (impossible gateway slot counter)",
    "duplicate_reports": "duplicates",
    "retransmitted_packets": "retransmitted packets",
    "truncated_packets": "truncated packets",
}

# The cyclic garbage collector's thresholds while a backfill runs. Readings are tuples of integers
# and make no cycles, but each is a container the collector tracks; at Python's default (a sweep
# every 700 new containers) it sweeps constantly while readings wait for identity and the
# formatter's caches fill: 5.6 s instead of 3.8 s for the 143,000 readings of
# benchmarks/commands.py's 20 MB polling stream (--dry-run --no-read-ahead).
GC_THRESHOLDS = (20_000, 10, 10)


@dataclass
class Summary:
    """What a backfill did: the progress line shows it as it goes, `text()` at the end."""

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
    same_point: int = 0  # waiting readings of a node and millisecond already waiting: one point
    energy_days: list[str] = field(default_factory=list)  # local days whose tigo_energy was written
    energy_points: int = 0  # tigo_energy points written (not counted in `points`)
    unrecognised_lines: int = 0  # taptap JSON lines of no shape we know, left out
    first_unrecognised: str | None = None  # where the first one is, and why
    seconds: float = 0.0
    # Every decoding layer's counters, summed over the input's streams (what was dropped, and why).
    counters: dict[str, int] = field(default_factory=dict)

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
        not_written = {name: self.counters.get(name, 0) for name in DROPPED_REPORTS}
        if any(not_written.values()):
            lines.append(
                "  power reports not written: "
                + ", ".join(
                    f"{count} {DROPPED_REPORTS[name]}" for name, count in not_written.items() if count
                )
            )
        if self.same_point:
            lines.append(
                f"  {self.same_point} readings at the node and millisecond of another: one point each pair"
            )
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
# ----------------------------------------------------------------------------------------------
# The run


class Interrupted(RecorderError):
    """SIGINT/SIGTERM stopped the backfill; says how far it got. Exit 130 or 143."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class BackfillOptions:
    """What `recorder backfill`'s flags ask for (see `recorder backfill --help`)."""

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
    scratch_directory: Path | None = None  # for readings waiting for identity (None: temporary)


def _until_done(frames: Iterator[Frames | FileDone], done: FileDone | None = None) -> Iterator[Frames]:
    """The current file's frame batches; its `FileDone` is copied into `done`."""
    for item in frames:
        if isinstance(item, FileDone):
            if done is not None:
                done.error, done.truncated, done.bus_bytes = item.error, item.truncated, item.bus_bytes
            return
        yield item


class Backfill:
    """`recorder backfill`'s loop: files -> pipeline -> points, in one or two passes (module
    docstring). `run()` does it all and returns the summary."""

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
        self.activity: Activity = {}  # for `nodes list`'s LAST REPORT (the writing pass's)
        self._stop = threading.Event()
        self._stop_exit_code = 130
        self._learned: list[Output] = []  # identity learned so far (saved however the run ends)
        # The writing pass in progress, for counting what it has done when it is stopped.
        self._out: _Readings | None = None
        self._pipelines: list[DecodePipeline] = []

    def stop(self, exit_code: int = 130) -> None:
        """Ask the run to end soon (signal handlers call this): it raises `Interrupted`, having
        saved the identity learned so far. 130 for SIGINT, 143 for SIGTERM."""
        self._stop_exit_code = exit_code
        self._stop.set()

    def run(self) -> Summary:
        thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            return self._run()
        finally:
            gc.set_threshold(*thresholds)

    def _run(self) -> Summary:
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
        writer = WriterThread(self.writer, self.summary, self._stop)
        writer.start()
        stopped = False
        try:
            if two_pass:
                self._learn_identity(files, identities, gateways)
            self._write_points(files, identities, gateways, writer)
            writer.finish()
        except Stopped:
            stopped = True
        finally:
            writer.close()
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

    def _check_stop(self) -> None:
        if self._stop.is_set():
            self._count()
            raise Stopped

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
        return point_identity(gateway_id, node_id, address, self._labels, self.settings.site)

    def _readings(self, identities: IdentityMap, energy: ReplayEnergy | None = None) -> _Readings:
        options = self.options
        return _Readings(
            identities,
            PointFormatter(self._tags),
            HeldReadings(options.scratch_directory),
            self._learned,
            since_ms=to_millis(options.since) if options.since else None,
            until_ms=to_millis(options.until) if options.until else None,
            energy=energy,
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
        learned = self._learned  # saved however the run ends
        pipeline = DecodePipeline(Observer(identities, gateways, readings=False))
        previous_format = None
        with self._frames(files) as frames:
            for item in files:
                if item.format == "taptap-json":
                    out = self._readings(identities)  # nothing is written, nothing waits
                    # (What cannot be read is reported by the second pass; what came before counts.)
                    with contextlib.suppress(OSError, EOFError, zlib.error):
                        self._json_file(item, out, write=False)
                    continue
                if item.format == "raw" or previous_format == "raw":
                    # Capture files continue each other (the archive rotates mid-stream); raw dumps do not.
                    pipeline = DecodePipeline(Observer(identities, gateways, readings=False))
                previous_format = item.format
                # (Unreadable parts are reported by the second pass; what came before counts.)
                for batch in _until_done(frames):
                    learned.extend(pipeline.feed_frames(batch.bodies, batch.times).learned)
                    self._check_stop()

    @staticmethod
    def _learn_json(out: _Readings, key: NodeKey, address: bytes, at: datetime) -> None:
        """A mapping a taptap line revealed; the readings of that node held so far go out."""
        changed, previous = out.identities.learn(key, address, SOURCE_IMPORT, to_millis(at))
        if changed:
            out.take([], [MappingLearned(key[0], key[1], address, SOURCE_IMPORT, at, previous)])

    def _json_file(self, item: InputFile, out: _Readings, *, write: bool) -> None:
        """One file of taptap JSON lines (see `recorder.backfill.taptap_json`): identity, then readings.

        taptap's power reports are placed already (it logs their measurement time): each becomes
        a reading as it is, with the identity valid at its measurement time. An infrastructure
        report has no time of its own: its mappings count from the reading before it (or, at the
        top of a file, the first one after it). Raises SkippedFile when not one line was
        recognised; OSError, EOFError or zlib.error when the file cannot be read further.
        """
        identities = out.identities
        last_at: datetime | None = None
        waiting: list[tuple[int, int, bytes]] = []  # mappings seen before any reading
        lines = recognised = unrecognised = 0
        first_unrecognised: tuple[int, str] | None = None
        readings: list[Reading] = []
        for number, line in taptap_json.read_lines(item.path):
            self._check_stop()
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
                        out.take(readings)
                        readings = []
                        self._learn_json(out, (gateway_id, node_id), address, last_at)
                continue
            key = (line.gateway_id, line.node_id)
            last_at = line.measured_at
            if waiting or line.node_address is not None:
                out.take(readings)  # in order: what came before resolves as it did
                readings = []
            for gateway_id, node_id, address in waiting:
                self._learn_json(out, (gateway_id, node_id), address, last_at)
            waiting = []
            if line.node_address is not None:
                self._learn_json(out, key, line.node_address, last_at)
            if not write:
                continue
            measured_ms = line.measured_ms
            # taptap logs no receive time or slot counter.
            readings.append(
                (*key, measured_ms, measured_ms, 0, *line.values, identities.resolve(key, measured_ms))
            )
            out.json_readings += 1
            if len(readings) >= 5000:
                out.take(readings)
                readings = []
        out.take(readings)
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
        writer: WriterThread,
    ) -> None:
        self.passes += 1
        options = self.options
        energy = ReplayEnergy(self.settings.timezone, self.settings.energy_max_gap)
        out = self._out = self._readings(identities, energy)
        self.activity = out.activity
        pipelines = self._pipelines = [DecodePipeline(Observer(identities, gateways))]
        previous_format = None
        last_progress = time.monotonic()
        try:
            with self._frames(files) as frames:
                for item in files:
                    if item.format == "taptap-json":
                        try:
                            self._json_file(item, out, write=True)
                        except SkippedFile as error:
                            self.summary.skipped.append((item.path, str(error)))
                        except (OSError, EOFError, zlib.error) as error:
                            self.summary.skipped.append((item.path, f"cannot be read to its end ({error})"))
                    else:
                        if item.format == "raw" or previous_format == "raw":
                            # A new stream: fresh decoder and placement state, the same identity.
                            pipelines.append(DecodePipeline(Observer(identities, gateways)))
                        pipeline = pipelines[-1]
                        previous_format = item.format
                        done = FileDone(None)
                        bodies = 0
                        for batch in _until_done(frames, done):
                            bodies += len(batch.bodies)
                            out.take(*pipeline.feed_frames(batch.bodies, batch.times))
                            self._check_stop()
                            if len(out.lines) >= options.batch_size:
                                writer.submit(out.lines)
                                out.lines = []
                                now = time.monotonic()
                                if now - last_progress >= 0.5:
                                    last_progress = now
                                    self._count()
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
                    if len(out.lines) >= options.batch_size:
                        writer.submit(out.lines)
                        out.lines = []
                    self.summary.files_done += 1
                    self.summary.bytes_done += item.size
            written, dropped = out.flush_unresolved(
                options.on_unresolved == "write", writer, options.batch_size
            )
        finally:
            self.summary.same_point = out.held.same_point
            out.held.close()
        self.summary.unresolved = written + dropped
        self.summary.dropped_unresolved = dropped
        if out.lines:
            writer.submit(out.lines)
            out.lines = []
        writer.submit(self._energy_lines(energy))  # the end of the input closes every day
        self._count()

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

    def _count(self) -> None:
        out = self._out
        if out is None:
            return  # the first pass counts nothing
        totals: dict[str, int] = {}
        for pipeline in self._pipelines:
            for name, value in pipeline.counters.as_dict().items():
                totals[name] = totals.get(name, 0) + value
        self.summary.counters = totals
        self.summary.readings = totals.get("readings", 0) + out.json_readings
        self.summary.out_of_range = out.out_of_range


class _Readings:
    """Where the writing pass puts the observer's outputs: lines (and daily energy) for readings
    whose node is known, held readings for the others (released when a mapping is learned),
    identity to persist."""

    def __init__(
        self,
        identities: IdentityMap,
        formatter: PointFormatter,
        held: HeldReadings,
        learned: list[Output],
        *,
        since_ms: int | None,
        until_ms: int | None,
        energy: ReplayEnergy | None = None,
    ) -> None:
        self.identities = identities
        self.formatter = formatter
        self.energy = energy  # None: the first pass, whose readings become no point
        self._samples: list[Sample] = []  # energy samples of the points made since the last feed
        self.held = held
        self.since_ms = since_ms
        self.until_ms = until_ms
        self.lines: list[str] = []
        self.learned = learned  # the backfill's own list: saved however the run ends
        self.activity: Activity = {}  # of the readings in range, as `run` counts them
        self.out_of_range = 0
        self.json_readings = 0

    def take(self, readings: list[Reading], learned: Sequence[Output] = ()) -> None:
        """Readings (and what was learned while they were placed)."""
        if self.since_ms is not None or self.until_ms is not None:
            readings = self._in_range(readings)
        count_activity(self.activity, readings)
        unresolved: list[Reading] = []
        self._points(readings, unresolved)
        self.held.add_all(unresolved)
        for output in learned:
            if isinstance(output, MappingLearned):
                released = self.held.release((output.gateway_id, output.node_id), self.identities)
                if released:
                    self._points(released)
            if not isinstance(output, tuple):
                self.learned.append(output)
        self._feed_energy()

    def _points(self, readings: list[Reading], unresolved: list[Reading] | None = None) -> None:
        """Readings become points here, and nowhere else: their lines, and their daily energy
        (`samples_of`, as `run` feeds a reading when it becomes ready to send). Given
        `unresolved`, readings whose node is not known yet go there instead (they wait)."""
        self.lines += self.formatter.lines(readings, unresolved)
        if self.energy is not None:
            if unresolved:
                readings = [reading for reading in readings if reading[LONG_ADDRESS] is not None]
            self._samples += samples_of(readings)

    def _feed_energy(self) -> None:
        """Integrate the samples of the points made since the last call, all at once (their
        order among themselves does not matter; see `EnergyAccumulator.feed`)."""
        if self.energy is not None:
            self.energy.feed(self._samples)

    def _in_range(self, readings: list[Reading]) -> list[Reading]:
        since_ms = self.since_ms if self.since_ms is not None else -(2**63)
        until_ms = self.until_ms if self.until_ms is not None else 2**63
        kept = [reading for reading in readings if since_ms <= reading[MEASURED_MS] < until_ms]
        self.out_of_range += len(readings) - len(kept)
        return kept

    def flush_unresolved(self, write: bool, writer: WriterThread, batch_size: int) -> tuple[int, int]:
        """At the end of the input: (written without barcode, dropped). The held readings come
        node by node in measurement order, so their energy is integrated batch by batch: memory
        stays flat however many waited."""
        written = dropped = 0
        for batch in self.held.drain(batch_size):
            if write:
                self._points(batch)
                self._feed_energy()
                written += len(batch)
                if len(self.lines) >= batch_size:
                    writer.submit(self.lines)
                    self.lines = []
            else:
                dropped += len(batch)
        self._feed_energy()
        return written, dropped


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
