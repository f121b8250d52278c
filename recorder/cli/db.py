"""`recorder db`: look at and upgrade the state database's schema."""

from __future__ import annotations

from pathlib import Path

import typer

from recorder.cli.common import ConfigOption, DbOption, settings_for, writable_store
from recorder.cli.framework import Command, Group

app = typer.Typer(
    help="The state database's schema (upgraded automatically before every run).",
    no_args_is_help=True,
    rich_markup_mode=None,
    cls=Group,
)


@app.command("upgrade", cls=Command)
def upgrade(db: Path | None = DbOption, config: Path | None = ConfigOption) -> None:
    """Bring the state database to the newest schema (creating it if needed)."""
    from recorder.storage.db import current_revision

    settings = settings_for(db, config)
    store = writable_store(settings)
    print(f"{settings.database}: schema at revision {current_revision(store.engine)} (newest)")


@app.command("current", cls=Command)
def current(db: Path | None = DbOption, config: Path | None = ConfigOption) -> None:
    """Show the state database's schema revision and whether it is the newest (changes nothing)."""
    from recorder.storage.readonly import open_read_only, schema_difference, schema_revision

    settings = settings_for(db, config)
    connection = open_read_only(settings.database_path, settings.database.how, check_schema=False)
    revision = schema_revision(connection)
    print(f"{settings.database}: schema at revision {revision or 'none'} ({schema_difference(revision)})")
