"""Options and helpers shared by the CLI commands.

Every command module imports only this, typer and light modules at import time; what a command
needs (SQLAlchemy, the decoder, influxdb-client, the backfill machinery) is imported inside the
command's function, so `recorder --help` and the read-only commands start quickly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from recorder.config import Settings, environment_names, load_settings
from recorder.errors import UsageError

if TYPE_CHECKING:
    import sqlite3

    from recorder.storage.db import Synchronous
    from recorder.storage.state import StateStore

SourceOption = typer.Option(
    ...,
    "--source",
    "-s",
    envvar="RECORDER_SOURCE",
    help="Where to read bus bytes: /dev/ttyUSB0, tcp://HOST[:PORT] (default port 7160), "
    "capture:PATH, raw:PATH or sim:[?OPTIONS].",
    show_default=False,
    metavar="URL",
)


def setting_option(name: str, *flags: str, help: str, metavar: str = "TEXT", **extra: Any) -> Any:
    """A flag for setting `name`, whose help names its environment variables and file key.

    The flag itself reads nothing from the environment: `recorder.config.load_settings` merges
    flags, environment and file, so every command resolves a setting the same way.
    """
    variables = ", ".join(environment_names(name))
    return typer.Option(
        None,
        *flags,
        help=f"{help} [env var: {variables}; file: {name}]",
        show_default=False,
        metavar=metavar,
        **extra,
    )


def config_option() -> Any:
    return typer.Option(
        None,
        "--config",
        help="TOML configuration file. Default: RECORDER_CONFIG, else /etc/recorder/recorder.toml "
        "when it exists, else ~/.config/recorder/recorder.toml when it exists.",
        show_default=False,
        metavar="FILE",
    )


def db_option() -> Any:
    return setting_option(
        "db",
        "--db",
        help="State database (SQLite). Default: /var/lib/recorder/recorder.db as root, "
        "else ~/.local/share/recorder/recorder.db.",
        metavar="FILE",
    )


DbOption = db_option()
ConfigOption = config_option()


def settings_for(db: Path | None, config: Path | None, **flags: Any) -> Settings:
    """Settings of a command that takes --db and --config (and maybe more flags)."""
    return load_settings({"db": db, **flags}, config)


def read_only_database(settings: Settings) -> sqlite3.Connection:
    """The state database, to look at: never created, migrated or locked (see storage.readonly)."""
    from recorder.storage.readonly import open_read_only

    return open_read_only(settings.database_path, settings.database.how)


def writable_store(settings: Settings, *, synchronous: Synchronous = "NORMAL") -> StateStore:
    """The state database, to change: created (its directory too, at the default location) and
    migrated when needed. `recorder run` asks for `synchronous="FULL"` (see storage.db)."""
    from recorder.storage.state import StateStore

    return StateStore.open(
        settings.database_path,
        create_directory=settings.db is None,
        how=settings.database.how,
        synchronous=synchronous,
    )


def dry_run_store(settings: Settings, directory: Path | None = None) -> StateStore:
    """The state store of a dry run (`run --dry-run`, `backfill --dry-run`): a copy of what the
    database knows (read like `status` reads it, so not even its -wal/-shm change; an older
    schema is migrated in the copy only), or an empty one when there is no database yet.

    The copy lives in memory (one connection: for a single thread, as backfill uses it), or in
    `directory` (a temporary one the caller removes) when several threads use it, as `run`'s
    reader and sender do. Nothing is created, migrated or written where the user's data is.
    """
    import sqlite3

    from recorder.storage.state import StateStore

    known = None
    if settings.database_path.exists():
        from recorder.storage.readonly import open_read_only

        known = open_read_only(settings.database_path, settings.database.how, check_schema=False)
    try:
        if directory is None:
            return StateStore.in_memory(known)
        copy = directory / "state.db"
        if known is not None:
            with sqlite3.connect(copy) as target:
                known.backup(target)
            target.close()
        return StateStore.open(copy)
    finally:
        if known is not None:
            known.close()


def check_output_path(path: Path, option: str) -> Path:
    """A file a command is about to write: not a directory, in a directory that exists."""
    path = path.expanduser()
    if path.is_dir():
        raise UsageError(f"{option}: {path} is a directory; give the path of a file to write")
    if not path.parent.is_dir():
        raise UsageError(f"{option}: cannot write {path}: directory {path.parent} does not exist")
    return path


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


def utc_now() -> datetime:
    """The CLI is the boundary where wall-clock time enters (imports, labels, status)."""
    return datetime.now(UTC)


def display_time(at: datetime | None) -> str:
    return at.astimezone().strftime("%Y-%m-%d %H:%M") if at else "-"
