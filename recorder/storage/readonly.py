"""Opening the state database to look, never to change: `status`, `nodes list|history|export`,
`db current`.

Reading never writes. These commands must not create a missing database (a mistyped `--db`
would otherwise leave an empty one behind and report "no nodes"), must not migrate it, and
must work for a person who may only read it: the service owns `/var/lib/recorder` (0750) and
its database (0640), and a user in group `recorder` reads them while `recorder run` writes.

Plain `sqlite3`, no SQLAlchemy or Alembic: a command that only shows something starts in a
fraction of the time (see `benchmarks/startup.py`).

How the file is opened (SQLite URI, `mode=ro`):

* The database is in WAL mode. While a writer is connected, its `-wal` and `-shm` files exist;
  a read-only connection reads the `-shm` index read-only (SQLite >= 3.22) and sees everything
  committed, even without write access to the files or the directory.
* With no writer connected, a clean close has removed `-wal` and `-shm`. A `mode=ro` connection
  would then have to create `-shm`, which a reader without write access to the directory cannot
  (SQLITE_READONLY_DIRECTORY), and which a reader who can would leave behind. So when neither
  `-wal` (or an empty one) nor `-shm` nor a rollback `-journal` exists, the file alone is the
  whole database and it is opened `immutable=1`: no lock, no side file. (A writer starting
  during the few milliseconds of the read would be writing to its own new `-wal`; pages reach
  the main file only at a checkpoint, far later.)
* A `-wal` with content but no `-shm` (a writer killed at the wrong moment) can only be
  recovered by a writer: reading the main file alone would silently miss the newest
  changes, so that case is an error saying what to do.

Errors say what is wrong in plain words: a missing file (exit 2, with how the path was chosen
and what to do), a permission problem (who owns what, who you are, which group to join), a
schema older or newer than this recorder; only real corruption gets "restore a backup".
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from recorder.errors import StateDatabaseError

# The schema revision this recorder reads and writes (kept equal to the newest migration in
# `migrations/versions` by a test); `recorder.storage.db` re-exports it.
HEAD_REVISION = "0003"
BUSY_TIMEOUT_S = 15.0


def _side_file(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _has_content(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def _uri(path: Path, immutable: bool) -> str:
    return f"file:{quote(str(path.absolute()))}?mode=ro" + ("&immutable=1" if immutable else "")


def open_read_only(path: Path, how: str, *, check_schema: bool = True) -> sqlite3.Connection:
    """A read-only connection to the state database at `path` (chosen as `how` says)."""
    from recorder.access import describe_access, join_group_hint

    named = f"{path} ({how})"
    try:
        path.stat()
    except FileNotFoundError:
        raise StateDatabaseError(
            f"no state database at {named}: nothing has been recorded there. Start `recorder run` "
            "(or `recorder backfill` / `recorder nodes import`) to create it, or point --db, RECORDER_DB "
            "or `db =` in the configuration file at the right one"
        ) from None
    except PermissionError:
        raise StateDatabaseError(
            f"cannot read state database {named}: permission denied; {describe_access(path)}. "
            f"{join_group_hint(path)}"
        ) from None
    if path.is_dir():
        raise StateDatabaseError(f"state database {named} is a directory; give the path of a file (--db)")
    if not os.access(path, os.R_OK):
        raise StateDatabaseError(
            f"cannot read state database {named}: permission denied; {describe_access(path)}. "
            f"{join_group_hint(path)}"
        )
    wal, shm, journal = (_side_file(path, suffix) for suffix in ("-wal", "-shm", "-journal"))
    quiet = not _has_content(wal) and not shm.exists() and not journal.exists()
    if not quiet and _has_content(wal) and not shm.exists():
        raise StateDatabaseError(
            f"cannot read state database {named} without changing it: {wal} holds changes a writer "
            f"has not finished (no {shm.name}; was `recorder run` killed?). Starting `recorder run` "
            "recovers them; or run this command as a user who may write to "
            f"{path.parent}"
        )
    connection = _connect(path, immutable=quiet, named=named)
    if check_schema:
        revision = schema_revision(connection)
        if revision != HEAD_REVISION:
            connection.close()
            raise StateDatabaseError(schema_problem(named, revision))
    return connection


def _connect(path: Path, *, immutable: bool, named: str) -> sqlite3.Connection:
    from recorder.access import describe_access, join_group_hint

    try:
        connection = sqlite3.connect(_uri(path, immutable), uri=True, timeout=BUSY_TIMEOUT_S)
        connection.execute("PRAGMA query_only = 1")
        connection.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as error:
        name = getattr(error, "sqlite_errorname", "") or ""
        if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or "not a database" in str(error):
            raise StateDatabaseError(
                f"{named} is not a usable SQLite database ({error}); restore a backup or move it aside"
            ) from None
        if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")):
            raise StateDatabaseError(
                f"cannot read state database {named} ({error}): SQLite needs its {path.name}-shm file; "
                f"{describe_access(path.parent)}. {join_group_hint(path)}"
            ) from None
        raise StateDatabaseError(f"cannot read state database {named}: {error}") from None
    return connection


def schema_revision(connection: sqlite3.Connection) -> str | None:
    """The Alembic revision stamped in the database, None when it has none (never migrated)."""
    has_table = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
    ).fetchone()
    if not has_table:
        return None
    rows = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    return str(rows[0][0]) if len(rows) == 1 else None


def schema_difference(revision: str | None) -> str:
    """How a revision differs from this recorder's, and what to do about it."""
    if revision == HEAD_REVISION:
        return "newest"
    if revision is None:
        return "no recorder schema: empty, or not made by the recorder; `recorder db upgrade` creates it"
    if revision.isdigit() and HEAD_REVISION.isdigit() and int(revision) < int(HEAD_REVISION):
        return (
            f"older than this recorder's {HEAD_REVISION}: it is upgraded when `recorder run` starts, "
            "or by `recorder db upgrade` run as a user who may write it"
        )
    return (
        f"unknown to this recorder, which knows up to {HEAD_REVISION}: written by a newer recorder; "
        "upgrade this one"
    )


def schema_problem(named: str, revision: str | None) -> str:
    """Why a database whose revision is not this recorder's cannot be read as it is."""
    return f"state database {named} has schema revision {revision or 'none'} ({schema_difference(revision)})"
