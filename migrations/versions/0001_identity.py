"""Identity: gateways, optimizers with labels, mapping history, node activity, health state.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from recorder.storage.models import UtcMillis

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gateways",
        sa.Column("gateway_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("long_address", sa.String(length=23), nullable=True),
        sa.Column("barcode", sa.String(length=16), nullable=True),
        sa.Column("version", sa.Text(), nullable=True),
        sa.Column("first_seen", UtcMillis(), nullable=False),
        sa.Column("last_seen", UtcMillis(), nullable=False),
        sa.PrimaryKeyConstraint("gateway_id", name=op.f("pk_gateways")),
    )
    op.create_table(
        "node_activity",
        sa.Column("gateway_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("node_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("first_report_at", UtcMillis(), nullable=False),
        sa.Column("last_report_at", UtcMillis(), nullable=False),
        sa.Column("report_count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("gateway_id", "node_id", name=op.f("pk_node_activity")),
    )
    op.create_table(
        "optimizers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("long_address", sa.String(length=23), nullable=False),
        sa.Column("barcode", sa.String(length=16), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("string", sa.String(length=200), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("first_seen", UtcMillis(), nullable=False),
        sa.Column("last_seen", UtcMillis(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_optimizers")),
        sa.UniqueConstraint("barcode", name=op.f("uq_optimizers_barcode")),
        sa.UniqueConstraint("long_address", name=op.f("uq_optimizers_long_address")),
    )
    op.create_table(
        "recorder_state",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", UtcMillis(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_recorder_state")),
    )
    op.create_table(
        "node_mappings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("gateway_id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("optimizer_id", sa.Integer(), nullable=False),
        sa.Column("valid_from", UtcMillis(), nullable=False),
        sa.Column("valid_to", UtcMillis(), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("is_alias", sa.Boolean(), nullable=False),
        sa.Column("first_seen", UtcMillis(), nullable=False),
        sa.Column("last_seen", UtcMillis(), nullable=False),
        sa.ForeignKeyConstraint(
            ["optimizer_id"], ["optimizers.id"], name=op.f("fk_node_mappings_optimizer_id_optimizers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_mappings")),
        sa.UniqueConstraint("gateway_id", "node_id", "valid_from", name=op.f("uq_node_mappings_gateway_id")),
    )
    with op.batch_alter_table("node_mappings", schema=None) as batch_op:
        batch_op.create_index("ix_node_mappings_node", ["gateway_id", "node_id", "valid_from"], unique=False)
        batch_op.create_index(batch_op.f("ix_node_mappings_optimizer_id"), ["optimizer_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("node_mappings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_node_mappings_optimizer_id"))
        batch_op.drop_index("ix_node_mappings_node")
    op.drop_table("node_mappings")
    op.drop_table("recorder_state")
    op.drop_table("optimizers")
    op.drop_table("node_activity")
    op.drop_table("gateways")
