"""A private copy of the state database, for the dry runs (`run --dry-run`, `backfill --dry-run`).

A dry run goes through the same code as the real thing, on a copy, so that nothing the user has
changes: the database file is neither created, migrated nor written, and no `-wal`/`-shm` file
appears beside it. How the copy is taken:

* no `-wal` file beside the database: every committed change is in the main file, and a writer
  that starts meanwhile appends to a new WAL, not to the main file (it would only write there at
  a checkpoint, after a thousand pages). A byte copy is consistent and touches nothing;
* a `-wal` file exists (`run` is recording, or was killed): the WAL may hold committed changes
  the main file lacks. SQLite's online backup, read through a read-only connection, copies a
  consistent snapshot including them. A read-only connection never checkpoints, so neither file
  changes (a normal connection closing last would fold the WAL into the main file). Only the
  `-shm` file, the WAL's shared-memory index, which holds no data, may be rebuilt, as any reader
  of the database does.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from recorder.errors import StateDatabaseError


def scratch_copy(path: Path, directory: Path) -> Path:
    """Copy the database at `path` (if it exists) into `directory`; returns the copy's path.

    The copy is opened like any state database afterwards (and migrated, if it is old: the
    original keeps its revision).
    """
    path, copy = path.expanduser(), directory / "state.db"
    if not path.exists():
        return copy  # nothing known yet; the dry run starts from an empty copy
    try:
        if not Path(f"{path}-wal").exists():
            shutil.copyfile(path, copy)
            return copy
        original = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            target = sqlite3.connect(copy)
            try:
                original.backup(target)
            finally:
                target.close()
        finally:
            original.close()
    except (OSError, sqlite3.Error) as error:
        raise StateDatabaseError(f"cannot read state database {path} for the dry run: {error}") from None
    return copy
