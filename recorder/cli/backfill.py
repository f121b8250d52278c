"""`recorder backfill`: load recorded traffic (the run archive, captures, taptap logs) into InfluxDB."""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import typer

from recorder.backfill import Backfill, BackfillOptions, Interrupted, check_format, terminal_progress
from recorder.cli.common import parse_datetime
from recorder.config import load_settings
from recorder.sinks.influx import InfluxWriter
from recorder.storage.scratch import scratch_copy
from recorder.storage.state import StateStore

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
        None, "--format", help="capture, raw or taptap-json (default: detected)."
    ),
    since: str | None = typer.Option(None, "--since", help="Only readings measured at or after this time."),
    until: str | None = typer.Option(None, "--until", help="Only readings measured before this time."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Decode and count what would be written; write nothing."
    ),
    start: str | None = typer.Option(None, "--start", help="For raw dumps, the time of the first byte."),
    db: Path | None = typer.Option(
        None, "--db", help="State database (also RECORDER_DB).", show_default=False
    ),
    config: Path | None = typer.Option(
        None, "--config", help="TOML configuration file (also RECORDER_CONFIG)."
    ),
    influx_url: str | None = typer.Option(
        None, "--influx-url", help="As for `recorder run` (also INFLUX_URL...).", rich_help_panel=_INFLUX
    ),
    influx_token: str | None = typer.Option(
        None, "--influx-token", help="As for `recorder run`.", rich_help_panel=_INFLUX
    ),
    influx_org: str | None = typer.Option(
        None, "--influx-org", help="As for `recorder run`.", rich_help_panel=_INFLUX
    ),
    influx_bucket: str | None = typer.Option(
        None, "--influx-bucket", help="As for `recorder run`.", rich_help_panel=_INFLUX
    ),
    influx_api: str | None = typer.Option(
        None, "--influx-api", help="As for `recorder run`: auto, v1 or v2.", rich_help_panel=_INFLUX
    ),
    site: str | None = typer.Option(
        None, "--site", help="As for `recorder run`: a site tag on every point.", show_default=False
    ),
    batch_size: int = typer.Option(20_000, "--batch-size", min=1, help="Points per write."),
    read_ahead: bool | None = typer.Option(
        None,
        "--read-ahead/--no-read-ahead",
        help="Read and split frames in a second process while this one decodes. Default: for "
        "16 MB or more of bus input, with 4+ cores, or 2+ when InfluxDB is on another host.",
        show_default=False,
    ),
    on_unresolved: str | None = typer.Option(
        None, "--on-unresolved", help="Readings whose barcode is never learned: write (node ID only) or drop."
    ),
) -> None:
    """Replay recorded traffic into InfluxDB, tagged by the barcode valid at each measurement.

    Safe to repeat: the same input always gives the same points, so nothing is doubled.
    """
    flags: dict[str, Any] = {
        "db": db,
        "influx_url": influx_url,
        "influx_token": influx_token,
        "influx_org": influx_org,
        "influx_bucket": influx_bucket,
        "influx_api": influx_api,
        "site": site,
        "on_unresolved": on_unresolved,
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
    )
    from recorder.cli.nodes import open_store

    # Made first: a malformed --influx-url is refused before anything is opened or created.
    writer = _CountingWriter() if dry_run else InfluxWriter(settings, gzip=False)
    with tempfile.TemporaryDirectory(prefix="recorder-backfill-") as scratch:
        if dry_run:  # on a copy: the database is not created, migrated or written
            store = StateStore.open(scratch_copy(settings.database_path, Path(scratch)))
        else:
            store = open_store(settings.db)  # a dry run only reads it (persist_identity is off)
        job = Backfill(settings, store, writer, options, terminal_progress(sys.stderr))
        try:
            with _stopped_by_signals(job):
                summary = job.run()
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
