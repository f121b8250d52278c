"""`recorder backfill`: load recorded traffic (the run archive, captures, taptap logs) into InfluxDB."""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import typer

from recorder.cli.common import (
    ConfigOption,
    DbOption,
    dry_run_store,
    parse_datetime,
    setting_option,
    utc_now,
    writable_store,
)
from recorder.config import load_settings

if TYPE_CHECKING:
    from recorder.backfill import Backfill

_INFLUX = "InfluxDB"


class _CountingWriter:
    """--dry-run: accept every line, write nothing."""

    def write(self, lines: list[str]) -> None:
        pass

    def close(self) -> None:
        pass


def backfill(
    paths: list[Path] = typer.Argument(
        ...,
        metavar="PATH...",
        help="Files or directories (walked), e.g. the run archive.",
        show_default=False,
    ),
    format: str | None = typer.Option(
        None, "--format", help="capture, raw or taptap-json (default: detected).", metavar="FORMAT"
    ),
    since: str | None = typer.Option(
        None, "--since", help="Only readings measured at or after this time.", metavar="TIME"
    ),
    until: str | None = typer.Option(
        None, "--until", help="Only readings measured before this time.", metavar="TIME"
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Decode and count what would be written; write nothing."
    ),
    start: str | None = typer.Option(
        None, "--start", help="For raw dumps, the time of the first byte.", metavar="TIME"
    ),
    db: Path | None = DbOption,
    config: Path | None = ConfigOption,
    influx_url: str | None = setting_option(
        "influx_url", "--influx-url", help="As for `recorder run`.", metavar="URL", rich_help_panel=_INFLUX
    ),
    influx_token: str | None = setting_option(
        "influx_token",
        "--influx-token",
        help="As for `recorder run`.",
        metavar="TOKEN",
        rich_help_panel=_INFLUX,
    ),
    influx_org: str | None = setting_option(
        "influx_org", "--influx-org", help="As for `recorder run`.", metavar="ORG", rich_help_panel=_INFLUX
    ),
    influx_bucket: str | None = setting_option(
        "influx_bucket",
        "--influx-bucket",
        help="As for `recorder run`.",
        metavar="BUCKET",
        rich_help_panel=_INFLUX,
    ),
    influx_api: str | None = setting_option(
        "influx_api",
        "--influx-api",
        help="As for `recorder run`: auto, v1 or v2.",
        metavar="auto|v1|v2",
        rich_help_panel=_INFLUX,
    ),
    site: str | None = setting_option(
        "site", "--site", help="As for `recorder run`: a site tag on every point.", metavar="NAME"
    ),
    batch_size: int = typer.Option(20_000, "--batch-size", min=1, help="Points per write.", metavar="N"),
    read_ahead: bool | None = typer.Option(
        None,
        "--read-ahead/--no-read-ahead",
        help="Read and split frames in a second process while this one decodes. Default: for "
        "16 MB or more of bus input, with 4+ cores, or 2+ when InfluxDB is on another host.",
        show_default=False,
    ),
    on_unresolved: str | None = setting_option(
        "on_unresolved",
        "--on-unresolved",
        help="Readings whose barcode is never learned: write (node ID only) or drop.",
        metavar="write|drop",
    ),
    timezone: str | None = setting_option(
        "timezone",
        "--timezone",
        help="As for `recorder run`: the site's time zone for daily energy (default: the machine's).",
        metavar="ZONE",
    ),
    energy_max_gap: str | None = setting_option(
        "energy_max_gap",
        "--energy-max-gap",
        help="As for `recorder run`: readings further apart add no energy (default: 10m).",
        metavar="DURATION",
    ),
) -> None:
    """Replay recorded traffic into InfluxDB, tagged by the barcode valid at each measurement.

    Safe to repeat: the same input always gives the same points, so nothing is doubled.
    """
    from recorder.backfill import Backfill, BackfillOptions, Interrupted, check_format, terminal_progress
    from recorder.sinks.influx import InfluxWriter

    flags: dict[str, Any] = {
        "db": db,
        "influx_url": influx_url,
        "influx_token": influx_token,
        "influx_org": influx_org,
        "influx_bucket": influx_bucket,
        "influx_api": influx_api,
        "site": site,
        "on_unresolved": on_unresolved,
        "timezone": timezone,
        "energy_max_gap": energy_max_gap,
    }
    settings = load_settings(flags, config)
    options = BackfillOptions(
        paths=paths,
        format=check_format(format),
        since=parse_datetime(since, "--since") if since else None,
        until=parse_datetime(until, "--until") if until else None,
        raw_start=parse_datetime(start, "--start") if start else None,
        batch_size=batch_size,
        read_ahead=read_ahead,
        database_here=not dry_run and is_this_machine(settings.influx_url),
        on_unresolved=settings.on_unresolved,
        persist_identity=not dry_run,
        # Readings waiting for a barcode beyond those kept in memory: on the disk the state
        # database is on (a dry run leaves that directory alone and uses the temporary one).
        scratch_directory=None
        if dry_run or not settings.database_path.parent.is_dir()
        else settings.database_path.parent,
    )
    # Made first: a malformed --influx-url is refused before anything is opened or created.
    writer = _CountingWriter() if dry_run else InfluxWriter(settings, gzip=False)
    store = dry_run_store(settings) if dry_run else writable_store(settings)
    job = Backfill(settings, store, writer, options, terminal_progress(sys.stderr))
    try:
        with _stopped_by_signals(job):
            summary = job.run()
        if not dry_run:
            # What `recorder status` shows about the last backfill.
            store.put_state(
                "backfill",
                {
                    "files": summary.files_done,
                    "skipped": len(summary.skipped),
                    "readings": summary.readings,
                    "points": summary.points,
                    "influx_url": settings.influx_url,
                    "influx_bucket": settings.influx_bucket,
                },
                utc_now(),
            )
    except Interrupted as interrupted:
        print(f"recorder: {interrupted}", file=sys.stderr)
        raise typer.Exit(interrupted.exit_code) from None
    finally:
        writer.close()
        store.close()
    text = summary.text()
    if dry_run:
        text = text.replace("points written", "points would be written")
    print(text)
    if summary.skipped or summary.rejected:
        raise typer.Exit(1)


@contextlib.contextmanager
def _stopped_by_signals(job: Backfill) -> Iterator[None]:
    """SIGINT/SIGTERM ask the backfill to stop (exit 130/143 after saving what it learned);
    a second one ends the process at once."""

    def stop(number: int, _frame: FrameType | None) -> None:
        job.stop(128 + number)
        signal.signal(number, signal.SIG_DFL)

    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def is_this_machine(url: str) -> bool:
    """Whether a URL's host is this machine (loopback, or this host's own name)."""
    host = (urlsplit(url).hostname or "localhost").lower()
    if host in ("localhost", socket.gethostname().lower()):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
