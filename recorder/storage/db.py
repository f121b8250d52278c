"""Opening the state database: engine, pragmas, schema migrations.

Every process that touches the database goes through `open_database`, which:

* creates a SQLAlchemy engine on the SQLite file with WAL journaling (readers never block the
  writer, so `recorder nodes list` works while `recorder run` records), `foreign_keys=ON` and a
  busy timeout (a second writer waits instead of failing with "database is locked");
  `synchronous=NORMAL` unless the caller asks for `FULL` (`recorder run`, whose loss bound needs
  each commit on the disk when it returns; it commits rarely, so the syncs cost little);
* refuses, with a message saying what to do, a file that is not a SQLite database, and a
  database whose schema revision is newer than this program knows;
* upgrades the schema to the newest revision in-process (Alembic), unless asked not to.

This is the writers' door (`run`, `backfill`, `nodes label|import`, `db upgrade`, `observe --db`):
it may create the file and migrate it, and says so in the log when it creates one. Commands that
only show something open the database through `recorder.storage.readonly` instead, which never
creates, migrates or locks anything. Which file is used, and how that was decided, is
`recorder.config`'s business (`Settings.database`); `how` only goes into messages here.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import DatabaseError
from sqlalchemy.pool import StaticPool

from recorder.errors import StateDatabaseError
from recorder.storage.readonly import HEAD_REVISION

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 15_000
# HEAD_REVISION: the newest revision in migrations/versions (a test keeps the two in step). Knowing
# it lets the common case, a database already at head, open without importing Alembic (~10 MB).
Synchronous = Literal["NORMAL", "FULL"]


def _set_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA synchronous = NORMAL")  # durable at each checkpoint; safe with WAL
    cursor.close()


def _sync_every_commit(connection: Any, _record: Any) -> None:
    connection.execute("PRAGMA synchronous = FULL")


def create_database_engine(path: Path, *, synchronous: Synchronous = "NORMAL") -> Engine:
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    event.listen(engine, "connect", _set_pragmas)
    if synchronous == "FULL":
        event.listen(engine, "connect", _sync_every_commit)
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


def open_database(
    path: Path,
    *,
    migrate: bool = True,
    create_directory: bool = False,
    how: str | None = None,
    synchronous: Synchronous = "NORMAL",
) -> Engine:
    """An engine on the state database at `path`, checked and (by default) migrated to head.

    `how` (e.g. "--db", "`db` in /etc/recorder/recorder.toml") says how the path was chosen, for
    messages. The file is created when missing; its directory only with `create_directory`.
    """
    path = path.expanduser()
    named = f"{path} ({how})" if how else str(path)
    if path.is_dir():
        raise StateDatabaseError(f"state database {named} is a directory; give the path of a file (--db)")
    if not path.parent.exists():
        if not create_directory:
            raise StateDatabaseError(
                f"cannot create state database {named}: directory {path.parent} does not exist"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StateDatabaseError(f"cannot create directory {path.parent}: {error.strerror}") from None
    _check_writable(path, named)
    creating = not path.exists()
    engine = create_database_engine(path, synchronous=synchronous)
    try:
        with engine.connect() as connection:
            connection.execute(text("PRAGMA schema_version")).scalar()
        revision = current_revision(engine)
    except DatabaseError as error:
        engine.dispose()
        reason = getattr(error, "orig", error)
        if _is_access_problem(reason):
            from recorder.access import describe_access, join_group_hint

            raise StateDatabaseError(
                f"cannot write state database {named}: {reason}; {describe_access(path)}. "
                f"{join_group_hint(path)}; commands that only show something (status, nodes list) "
                "need read access only"
            ) from None
        raise StateDatabaseError(
            f"{named} is not a usable SQLite database ({reason}); restore a backup or move it aside"
        ) from None
    if creating:
        log.info("created a new state database at %s", named)
    return _migrated(engine, revision, named, migrate)


def memory_database(copy_of: sqlite3.Connection | None = None) -> Engine:
    """A state database in memory (migrated to head): empty, or a copy of `copy_of`'s.

    For runs that must leave no trace: `backfill --dry-run` works on a copy of the real database
    (which it then only read) or on an empty one, and creates no file anywhere.
    """
    memory = sqlite3.connect(":memory:", check_same_thread=False)
    if copy_of is not None:
        copy_of.backup(memory)
    engine = create_engine("sqlite://", creator=lambda: memory, poolclass=StaticPool)
    event.listen(engine, "connect", _set_pragmas)
    return _migrated(engine, current_revision(engine), "the in-memory copy", migrate=True)


def _migrated(engine: Engine, revision: str | None, named: str, migrate: bool) -> Engine:
    """Refuse a schema newer than this recorder; bring an older one to head when asked."""
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
                f"state database {named} has schema revision {revision}, newer than this recorder "
                f"(which knows up to {scripts.get_current_head()}): upgrade the recorder"
            )
    if migrate and revision != scripts.get_current_head():
        upgrade(engine)
    return engine


def _check_writable(path: Path, named: str) -> None:
    """A writer needs the file and its directory (SQLite keeps -wal and -shm files beside it)."""
    from recorder.access import describe_access, join_group_hint

    problem = None
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        problem, where = "the file is not writable for you", path
    elif not os.access(path.parent, os.W_OK | os.X_OK):
        problem, where = f"its directory {path.parent} is not writable for you", path.parent
    if problem is not None:
        raise StateDatabaseError(
            f"cannot write state database {named}: {problem}; {describe_access(where)}. "
            f"{join_group_hint(where)}, or run it as the database's owner "
            "(commands that only show something, such as status and nodes list, need read access only)"
        )


def _is_access_problem(error: BaseException) -> bool:
    name = getattr(error, "sqlite_errorname", "") or ""
    text_ = str(error)
    return name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")) or (
        "readonly database" in text_ or "unable to open" in text_
    )
