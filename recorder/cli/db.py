"""`recorder db`: look at and upgrade the state database's schema."""

from __future__ import annotations

from pathlib import Path

import typer

from recorder.cli.common import DbOption, database_path
from recorder.storage.db import current_revision, head_revision, open_database

app = typer.Typer(
    help="The state database's schema (upgraded automatically before every run).", no_args_is_help=True
)


@app.command("upgrade")
def upgrade(db: Path | None = DbOption) -> None:
    """Bring the state database to the newest schema (creating it if needed)."""
    path, is_default = database_path(db)
    engine = open_database(path, create_directory=is_default)
    print(f"{path}: schema at revision {current_revision(engine)} (newest)")


@app.command("current")
def current(db: Path | None = DbOption) -> None:
    """Show the state database's schema revision and whether it is the newest."""
    path, _ = database_path(db)
    if not path.exists():
        print(f"{path}: does not exist yet (it is created on first use)")
        return
    revision = current_revision(open_database(path, migrate=False))
    head = head_revision()
    state = "newest" if revision == head else f"older than this recorder's {head}; run `recorder db upgrade`"
    print(f"{path}: schema at revision {revision or 'none'} ({state})")
