"""`recorder run` (the service) and `recorder status` (its health, from the state database)."""

from __future__ import annotations

import logging
import signal
import sys
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import typer

from recorder.cli.common import (
    ConfigOption,
    DbOption,
    display_time,
    dry_run_store,
    parse_datetime,
    read_only_database,
    setting_option,
    settings_for,
    utc_now,
    writable_store,
)
from recorder.config import Settings, load_settings
from recorder.errors import ConfigError, NothingDecodedError
from recorder.logs import configure_logging

if TYPE_CHECKING:
    from recorder.archive import Archive
    from recorder.live.address import HttpAddress
    from recorder.live.latest import LatestReadings
    from recorder.live.snapshot import LiveData
    from recorder.run import Ingest
    from recorder.sinks.influx import LineWriter
    from recorder.sources import Source
    from recorder.storage.state import StateStore

log = logging.getLogger(__name__)

_OPTIONS = "InfluxDB"
_LIVE = "Status page and Prometheus metrics"
_MQTT = "MQTT and Home Assistant"


def run(
    source: str | None = setting_option(
        "source",
        "--source",
        "-s",
        help="Bus source: /dev/ttyUSB0, tcp://HOST[:PORT], capture:PATH, raw:PATH, sim:?...",
        metavar="URL",
    ),
    db: Path | None = DbOption,
    config: Path | None = ConfigOption,
    influx_url: str | None = setting_option(
        "influx_url",
        "--influx-url",
        help="InfluxDB URL (default: http://localhost:8086).",
        metavar="URL",
        rich_help_panel=_OPTIONS,
    ),
    influx_token: str | None = setting_option(
        "influx_token",
        "--influx-token",
        help="Token; for InfluxDB 1.x use user:password.",
        metavar="TOKEN",
        rich_help_panel=_OPTIONS,
    ),
    influx_org: str | None = setting_option(
        "influx_org",
        "--influx-org",
        help="Organisation (default: -).",
        metavar="ORG",
        rich_help_panel=_OPTIONS,
    ),
    influx_bucket: str | None = setting_option(
        "influx_bucket",
        "--influx-bucket",
        help="Bucket; for InfluxDB 1.x database[/retention] (default: tigo).",
        metavar="BUCKET",
        rich_help_panel=_OPTIONS,
    ),
    influx_api: str | None = setting_option(
        "influx_api",
        "--influx-api",
        help="Write API: auto (asks the server), v1 (InfluxDB 1.x /write) or v2 (default: auto).",
        metavar="auto|v1|v2",
        rich_help_panel=_OPTIONS,
    ),
    site: str | None = setting_option(
        "site", "--site", help="Tag every point with site=NAME (many sites, one database).", metavar="NAME"
    ),
    batch_size: int | None = setting_option(
        "batch_size", "--batch-size", help="Points per write (default: 5000).", metavar="N"
    ),
    flush_interval: float | None = setting_option(
        "flush_interval",
        "--flush-interval",
        help="Seconds between writes to InfluxDB (default: 1).",
        metavar="SECONDS",
    ),
    commit_interval: float | None = setting_option(
        "commit_interval",
        "--commit-interval",
        help="Readings InfluxDB has not acknowledged are committed to disk within this many seconds: "
        "the most a power cut can lose (default: 60).",
        metavar="SECONDS",
    ),
    identity_hold: str | None = setting_option(
        "identity_hold",
        "--identity-hold",
        help="How long readings wait for their barcode, e.g. 36h (default: 36h).",
        metavar="DURATION",
    ),
    on_unresolved: str | None = setting_option(
        "on_unresolved",
        "--on-unresolved",
        help="After the hold: write (tagged with node ID only) or drop (default: write).",
        metavar="write|drop",
    ),
    archive: Path | None = setting_option(
        "archive",
        "--archive",
        help="Directory for the raw hourly capture files (default: next to the database).",
        metavar="DIR",
    ),
    archive_days: int | None = setting_option(
        "archive_days",
        "--archive-days",
        help="Keep raw files this many days; 0 disables (default: 30).",
        metavar="DAYS",
    ),
    no_report_warning: str | None = setting_option(
        "no_report_warning",
        "--no-report-warning",
        help="Warn when frames but no power reports arrive in daylight this long (default: 30m).",
        metavar="DURATION",
    ),
    watchdog_seconds: float | None = setting_option(
        "watchdog_seconds",
        "--watchdog-seconds",
        help="Reconnect a live source that sent nothing for this long (default: 90).",
        metavar="SECONDS",
    ),
    http: str | None = setting_option(
        "http",
        "--http",
        help="Serve the status page, /api/status and /metrics on HOST:PORT; empty turns them off "
        "(default: 127.0.0.1:9595).",
        metavar="HOST:PORT",
        rich_help_panel=_LIVE,
    ),
    stale_after: str | None = setting_option(
        "stale_after",
        "--stale-after",
        help="Live views leave out values of readings older than this (default: 10m).",
        metavar="DURATION",
        rich_help_panel=_LIVE,
    ),
    timezone: str | None = setting_option(
        "timezone",
        "--timezone",
        help="The site's time zone for daily energy, e.g. Europe/Berlin (default: the machine's).",
        metavar="ZONE",
    ),
    energy_max_gap: str | None = setting_option(
        "energy_max_gap",
        "--energy-max-gap",
        help="Readings further apart add no energy and count as uncovered time (default: 10m).",
        metavar="DURATION",
    ),
    mqtt: str | None = setting_option(
        "mqtt",
        "--mqtt",
        help="Publish to this MQTT broker with Home Assistant discovery (default: off).",
        metavar="mqtt[s]://[USER:PASS@]HOST[:PORT]",
        rich_help_panel=_MQTT,
    ),
    mqtt_topic: str | None = setting_option(
        "mqtt_topic", "--mqtt-topic", help="Topic base for states (default: tigo).", rich_help_panel=_MQTT
    ),
    mqtt_discovery_prefix: str | None = setting_option(
        "mqtt_discovery_prefix",
        "--mqtt-discovery-prefix",
        help="Home Assistant's discovery prefix (default: homeassistant).",
        rich_help_panel=_MQTT,
    ),
    mqtt_interval: str | None = setting_option(
        "mqtt_interval",
        "--mqtt-interval",
        help="Seconds between publications, at most (default: 10).",
        metavar="SECONDS",
        rich_help_panel=_MQTT,
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the line protocol instead of writing it (no changes saved)."
    ),
    exit_at_end: bool = typer.Option(
        False,
        "--exit-at-end",
        help="With a finite source, stop once it is exhausted and the outbox has drained.",
    ),
    start: str | None = typer.Option(
        None, "--start", help="For raw: sources, the time of the first byte.", metavar="TIME"
    ),
) -> None:
    """Record the bus into InfluxDB, as a service: nothing is lost if InfluxDB or the link fails."""
    from recorder.run import Ingest
    from recorder.sources import LiveSource, ReconnectPolicy, SourceOptions, nothing_decoded_from, open_source

    flags: dict[str, Any] = {
        "source": source,
        "db": db,
        "influx_url": influx_url,
        "influx_token": influx_token,
        "influx_org": influx_org,
        "influx_bucket": influx_bucket,
        "influx_api": influx_api,
        "site": site,
        "batch_size": batch_size,
        "flush_interval": flush_interval,
        "commit_interval": commit_interval,
        "identity_hold": identity_hold,
        "on_unresolved": on_unresolved,
        "archive": archive,
        "archive_days": archive_days,
        "no_report_warning": no_report_warning,
        "watchdog_seconds": watchdog_seconds,
        "http": http,
        "stale_after": stale_after,
        "timezone": timezone,
        "energy_max_gap": energy_max_gap,
        "mqtt": mqtt,
        "mqtt_topic": mqtt_topic,
        "mqtt_discovery_prefix": mqtt_discovery_prefix,
        "mqtt_interval": mqtt_interval,
    }
    settings = load_settings(flags, config)
    configure_logging(
        settings.log_level
        if settings.log_level != "INFO"
        else logging.getLevelName(logging.getLogger().level)
    )
    # The first line of every run: which database and configuration, and why those.
    log.info("state database %s; configuration %s", settings.database, settings.config_file)
    if not settings.source:
        raise ConfigError(
            "no source given: use --source, RECORDER_SOURCE or `source =` in the configuration file"
        )
    options = SourceOptions(
        raw_start=parse_datetime(start, "--start") if start else None,
        policy=ReconnectPolicy(idle_timeout=settings.watchdog_seconds),
    )
    bus = open_source(settings.source, options)
    bus.check()
    with ExitStack() as stack:
        store, writer, archive_writer = _prepare(settings, dry_run, stack)
        latest = None
        if settings.http is not None or settings.mqtt is not None:
            from recorder.live.latest import LatestReadings

            latest = LatestReadings(settings.stale_after)
        ingest = Ingest(settings, store, writer, archive=archive_writer, latest=latest)
        if latest is not None:
            _start_live_outputs(settings, dry_run, latest, ingest, bus, store, stack)
        _handle_signals(ingest)
        ingest.run(bus, exit_at_end=exit_at_end and not isinstance(bus, LiveSource))
        if not ingest.stop_requested.is_set() and (
            reason := nothing_decoded_from(bus, ingest.pipeline.counters.stack.link.frames)
        ):
            raise NothingDecodedError(reason)


def _prepare(
    settings: Settings, dry_run: bool, stack: ExitStack
) -> tuple[StateStore, LineWriter, Archive | None]:
    from recorder.archive import Archive
    from recorder.sinks.influx import InfluxWriter, StdoutWriter

    if dry_run:
        # Same code path on a copy of the state database: nothing the user has changes.
        import tempfile

        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="recorder-dry-run-")))
        store = dry_run_store(settings, scratch)
        stack.callback(store.close)
        return store, StdoutWriter(sys.stdout), None
    # FULL: a commit is on the disk when it returns, which the stated loss bound relies on.
    store = writable_store(settings, synchronous="FULL")
    stack.callback(store.close)
    writer = InfluxWriter(settings)
    archive_writer = None
    if settings.archive_days > 0:
        directory = settings.archive_path
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"cannot create archive directory {directory}: {error.strerror}") from None
        archive_writer = Archive(directory, settings.archive_days)
    return store, writer, archive_writer


def _start_live_outputs(
    settings: Settings,
    dry_run: bool,
    latest: LatestReadings,
    ingest: Ingest,
    bus: Source,
    store: StateStore,
    stack: ExitStack,
) -> None:
    """The HTTP face and the MQTT publisher (each imported only when on), both reading one view.
    If the face cannot bind, or the broker cannot be reached, run records without them."""
    from recorder import __version__
    from recorder.live.snapshot import LiveData

    data = LiveData(
        latest,
        health=lambda: ingest.status_snapshot(bus),
        labels=store.labels,
        energy=ingest.energy.today,
    )
    if settings.http is not None:
        _start_live_face(settings.http, data, __version__, stack)
    if settings.mqtt is not None:
        if dry_run:
            log.info("dry run: not publishing to MQTT (retained messages would outlive it)")
        else:
            from recorder.live.mqtt import MqttPublisher

            publisher = MqttPublisher(
                settings.mqtt,
                data,
                topic=settings.mqtt_topic,
                discovery_prefix=settings.mqtt_discovery_prefix,
                interval=settings.mqtt_interval,
                version=__version__,
            )
            publisher.start()
            stack.callback(publisher.stop)  # after the run: a last pass, then offline


def _start_live_face(address: HttpAddress, data: LiveData, version: str, stack: ExitStack) -> None:
    from recorder.live.server import start_live_face

    server = start_live_face(address, data, version)
    if server is not None:
        stack.callback(server.stop)  # before the store closes (callbacks run last-in, first-out)


def _handle_signals(ingest: Ingest) -> None:
    def stop(number: int, _frame: FrameType | None) -> None:
        log.info("%s received: finishing up", signal.Signals(number).name)
        ingest.stop()
        signal.signal(number, signal.SIG_DFL)  # a second signal ends it at once

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def status(db: Path | None = DbOption, config: Path | None = ConfigOption) -> None:
    """Show the recorder's health as the last run saved it in the state database (changes nothing)."""
    from recorder.storage import queries

    settings = settings_for(db, config)
    connection = read_only_database(settings)
    with queries.snapshot(connection):
        saved = queries.get_state(connection, "health")
        backfilled = queries.get_state(connection, "backfill")
        nodes = queries.list_nodes(connection)
    resolved = sum(1 for row in nodes if row.barcode)
    last_report = max((row.last_report_at for row in nodes if row.last_report_at), default=None)
    rows: list[tuple[str, str]] = [
        ("configuration", str(settings.config_file)),
        ("state database", str(settings.database)),
    ]
    h: dict[str, Any] = {}
    if saved is None:
        rows.append(("recorder run", "has not saved its health in this database (never run with it?)"))
    else:
        h, updated_at = saved
        age = (utc_now() - updated_at).total_seconds()
        last_data = datetime.fromisoformat(h["last_data_at"]) if h.get("last_data_at") else None
        stale = "  <- not running?" if age > 300 else ""  # a running recorder saves it every 2 minutes
        rows += [
            ("health saved", f"{display_time(updated_at)} ({_ago(age)}){stale}"),
            ("source", f"{h.get('source')} ({h.get('source_state')}), last data {display_time(last_data)}"),
            (
                "bus",
                f"{h.get('bytes', 0)} bytes, {h.get('frames', 0)} frames, "
                f"{h.get('checksum_errors', 0)} checksum errors, {h.get('noise_bytes', 0)} noise bytes",
            ),
            ("decoded", f"{h.get('power_reports', 0)} power reports, {h.get('readings', 0)} readings"),
            (
                "InfluxDB",
                f"{h.get('points_written', 0)} points written to {h.get('influx_url')} "
                f"({h.get('influx_bucket')}), {h.get('write_errors', 0)} failed writes",
            ),
            (
                "outbox",
                f"{h.get('outbox_ready', 0)} ready, {h.get('outbox_held', 0)} waiting for a barcode, "
                f"{h.get('points_parked', 0)} parked",
            ),
        ]
    if backfilled is not None:
        b, finished_at = backfilled
        rows.append(
            (
                "last backfill",
                f"{display_time(finished_at)}: {b.get('files', 0)} files, {b.get('readings', 0)} readings, "
                f"{b.get('points', 0)} points written to {b.get('influx_url')} ({b.get('influx_bucket')})"
                + (f", {b['skipped']} files skipped" if b.get("skipped") else ""),
            )
        )
    unresolved = f", {h['unresolved_nodes']} unresolved" if "unresolved_nodes" in h else ""
    rows.append(
        (
            "nodes",
            f"{len(nodes)} known, {resolved} with a barcode{unresolved}, "
            f"last report measured {display_time(last_report)}",
        )
    )
    if h.get("latency_p99_ms") is not None:
        rows.append(
            ("latency", f"p50 {h['latency_p50_ms']} ms, p99 {h['latency_p99_ms']} ms (report to InfluxDB)")
        )
    if disk := _disk_line(h):
        rows.append(("disk", disk))
    if h.get("last_write_error"):
        rows.append(("last write error", str(h["last_write_error"])))
    if h.get("decode_stalled"):
        rows.append(
            ("WARNING", "frames arrive but no power reports decode in daylight: new firmware format?")
        )
    for label, text in rows:
        print(f"{label:<17}{text}")


def _disk_line(h: dict[str, Any]) -> str | None:
    """The state of the disk (only once it has ever been full, or while the archive gives way)."""
    from recorder.diskspace import describe_bytes

    free = describe_bytes(h["disk_free_bytes"]) if h.get("disk_free_bytes") is not None else "unknown"
    dropped = h.get("readings_dropped_disk_full", 0)
    lost = f", {dropped} readings dropped (memory bound)" if dropped else ""
    archive = ""
    if h.get("archive_paused"):
        archive = "; raw archive paused"
    if h.get("archive_removed_for_space"):
        archive += f"; {h['archive_removed_for_space']} raw archive files removed to make room"
    if h.get("disk_full"):
        return (
            f"FULL since {h.get('disk_full_since')}: cannot write {h.get('disk_full_what')} to "
            f"{h.get('disk_path')} ({free} free); {h.get('readings_in_memory', 0)} readings wait in "
            f"memory{lost}{archive}"
        )
    if h.get("disk_full_events") or archive or dropped:
        last = f", last at {h['disk_last_full_at']}" if h.get("disk_last_full_at") else ""
        return (
            f"ok ({free} free at {h.get('disk_path')}); {h.get('disk_full_events', 0)} writes failed "
            f"for lack of space{last}{lost}{archive}"
        )
    return None


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"
