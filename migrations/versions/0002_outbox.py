"""The outbox (readings committed before they are sent) and parked points, for `recorder run`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from recorder.storage.models import UtcMillis

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("gateway_id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("measured_at", UtcMillis(), nullable=False),
        sa.Column("received_at", UtcMillis(), nullable=False),
        sa.Column("enqueued_at", UtcMillis(), nullable=False),
        sa.Column("slot_counter", sa.Integer(), nullable=False),
        sa.Column("voltage_in_raw", sa.Integer(), nullable=False),
        sa.Column("voltage_out_raw", sa.Integer(), nullable=False),
        sa.Column("duty_cycle_raw", sa.Integer(), nullable=False),
        sa.Column("current_in_raw", sa.Integer(), nullable=False),
        sa.Column("temperature_raw", sa.Integer(), nullable=False),
        sa.Column("rssi", sa.Integer(), nullable=False),
        sa.Column("long_address", sa.String(length=23), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("gateway_id", "node_id", "measured_at", name=op.f("uq_outbox_gateway_id")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_state", ["state", "id"], unique=False)
    op.create_table(
        "parked_points",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("parked_at", UtcMillis(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_parked_points")),
    )


def downgrade() -> None:
    op.drop_table("parked_points")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_state")
    op.drop_table("outbox")
