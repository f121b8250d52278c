"""Options and helpers shared by the CLI commands."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from recorder.errors import UsageError

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
