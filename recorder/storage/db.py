"""Opening the state database: engine, pragmas, schema migrations.

Every process that touches the database goes through `open_database`, which:

* creates a SQLAlchemy engine on the SQLite file with WAL journaling (readers never block the
  writer, so `recorder nodes list` works while `recorder run` records), `foreign_keys=ON` and a
  busy timeout (a second writer waits instead of failing with "database is locked");
* refuses, with a message saying what to do, a file that is not a SQLite database, and a
  database whose schema revision is newer than this program knows;
* upgrades the schema to the newest revision in-process (Alembic), unless asked not to.

The default location is `$RECORDER_DB`, else `/var/lib/recorder/recorder.db` for root, else
`$XDG_DATA_HOME/recorder/recorder.db` (`~/.local/share/recorder/recorder.db`).
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import DatabaseError, OperationalError

from recorder.errors import StateDatabaseError

if TYPE_CHECKING:
    from alembic.config import Config

BUSY_TIMEOUT_MS = 15_000
# The newest revision in migrations/versions (a test keeps the two in step). Knowing it lets the
# common case, a database already at head, open without importing Alembic (~10 MB of memory).
HEAD_REVISION = "0003"


def default_database_path() -> Path:
    configured = os.environ.get("RECORDER_DB")
    if configured:
        return Path(configured).expanduser()
    if os.geteuid() == 0:
        return Path("/var/lib/recorder/recorder.db")
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "recorder" / "recorder.db"


def _set_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA synchronous = NORMAL")  # durable at each checkpoint; safe with WAL
    cursor.close()


def create_database_engine(path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    event.listen(engine, "connect", _set_pragmas)
    return engine


def migrations_directory() -> str:
    return str(files("recorder.migrations"))


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", migrations_directory())
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        revisions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return revisions[0] if len(revisions) == 1 else None


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def open_database(path: Path, *, migrate: bool = True, create_directory: bool = False) -> Engine:
    """An engine on the state database at `path`, checked and (by default) migrated to head."""
    path = path.expanduser()
    if path.is_dir():
        raise StateDatabaseError(f"state database {path} is a directory; give the path of a file (--db)")
    if not path.parent.exists():
        if not create_directory:
            raise StateDatabaseError(
                f"cannot create state database {path}: directory {path.parent} does not exist"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StateDatabaseError(f"cannot create directory {path.parent}: {error.strerror}") from None
    engine = create_database_engine(path)
    try:
        with engine.connect() as connection:
            connection.execute(text("PRAGMA schema_version")).scalar()
        revision = current_revision(engine)
    except DatabaseError as error:
        engine.dispose()
        reason = getattr(error, "orig", error)
        if isinstance(error, OperationalError) and "unable to open" in str(reason):
            raise StateDatabaseError(f"cannot open state database {path}: {reason}") from None
        raise StateDatabaseError(
            f"{path} is not a usable SQLite database ({reason}); restore a backup or move it aside"
        ) from None
    if revision == HEAD_REVISION:
        return engine
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config())
    if revision is not None:
        try:
            known = scripts.get_revision(revision)
        except Exception:  # alembic raises its own error types for unknown revisions
            known = None
        if known is None:
            engine.dispose()
            raise StateDatabaseError(
                f"state database {path} has schema revision {revision}, newer than this recorder "
                f"(which knows up to {scripts.get_current_head()}): upgrade the recorder"
            )
    if migrate and revision != scripts.get_current_head():
        upgrade(engine)
    return engine
