"""orphan delivery reports

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "orphan_reports",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("adapter", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=True),
        sa.Column("provider_message_id", sa.String(length=64), nullable=True),
        sa.Column("accounts", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("raw_status", sa.String(length=64), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error_detail", sa.Text(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orphan_reports")),
    )
    with op.batch_alter_table("orphan_reports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_orphan_reports_message_id"), ["message_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_orphan_reports_provider_message_id"),
            ["provider_message_id"],
            unique=False,
        )


def downgrade() -> None:

    with op.batch_alter_table("orphan_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orphan_reports_provider_message_id"))
        batch_op.drop_index(batch_op.f("ix_orphan_reports_message_id"))

    op.drop_table("orphan_reports")
