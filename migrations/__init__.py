"""Alembic migrations for the recorder's state database (installed as `recorder.migrations`)."""
