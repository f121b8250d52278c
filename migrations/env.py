"""Alembic environment for the recorder's state database.

In-process (`recorder.storage.db.upgrade`), the caller passes an open connection through
`config.attributes["connection"]`. From the command line (`alembic -c alembic.ini upgrade
head`), the database is `-x db=PATH`, else `$RECORDER_DB`, else the URL in alembic.ini.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from recorder.storage.db import create_database_engine
from recorder.storage.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations(connection: Connection) -> None:
    # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def database_path() -> str:
    arguments = context.get_x_argument(as_dictionary=True)
    url = config.get_main_option("sqlalchemy.url") or "sqlite:///recorder.db"
    return arguments.get("db") or os.environ.get("RECORDER_DB") or url.removeprefix("sqlite:///")


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    from pathlib import Path

    engine = create_database_engine(Path(database_path()))
    with engine.begin() as own_connection:
        run_migrations(own_connection)
    engine.dispose()
