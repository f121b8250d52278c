"""Options and helpers shared by the CLI commands."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from recorder.errors import UsageError
from recorder.storage.db import default_database_path

SourceOption = typer.Option(
    ...,
    "--source",
    "-s",
    envvar="RECORDER_SOURCE",
    help="Where to read bus bytes: /dev/ttyUSB0, tcp://HOST[:PORT] (default port 7160), "
    "capture:PATH, raw:PATH or sim:[?OPTIONS].",
    show_default=False,
)


def parse_datetime(text: str, what: str) -> datetime:
    """ISO-8601; a missing offset means UTC. Raises UsageError naming the option."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{what}: {text!r} is not an ISO-8601 time (e.g. 2025-06-21T09:00:00+00:00)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


DbOption = typer.Option(
    None,
    "--db",
    envvar="RECORDER_DB",
    help="State database (SQLite). Default: /var/lib/recorder/recorder.db as root, "
    "else ~/.local/share/recorder/recorder.db.",
    show_default=False,
)


def database_path(option: Path | None) -> tuple[Path, bool]:
    """The database to use, and whether it is the default location (whose directory we create)."""
    if option is not None:
        return option.expanduser(), False
    return default_database_path(), True


def utc_now() -> datetime:
    """The CLI is the boundary where wall-clock time enters (imports, labels, status)."""
    return datetime.now(UTC)


def display_time(at: datetime | None) -> str:
    return at.astimezone().strftime("%Y-%m-%d %H:%M") if at else "-"
