"""Energy per optimizer and local hour (`recorder.energy`).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from recorder.storage.models import UtcMillis

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "energy_series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("gateway_id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("long_address", sa.String(length=23), nullable=True),
        sa.Column("last_at", UtcMillis(), nullable=True),
        sa.Column("last_power", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_energy_series")),
        sa.UniqueConstraint(
            "gateway_id", "node_id", "long_address", name=op.f("uq_energy_series_gateway_id")
        ),
    )
    op.create_table(
        "energy_hours",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("hour", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("energy_wh", sa.Float(), nullable=False),
        sa.Column("covered_ms", sa.BigInteger(), nullable=False),
        sa.Column("uncovered_ms", sa.BigInteger(), nullable=False),
        sa.Column("readings", sa.Integer(), nullable=False),
        sa.Column("peak_w", sa.Float(), nullable=False),
        sa.Column("rssi_sum", sa.BigInteger(), nullable=False),
        sa.Column("temperature_max", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["series_id"], ["energy_series.id"], name=op.f("fk_energy_hours_series_id_energy_series")
        ),
        sa.PrimaryKeyConstraint("day", "hour", "series_id", name=op.f("pk_energy_hours")),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("energy_hours")
    op.drop_table("energy_series")
