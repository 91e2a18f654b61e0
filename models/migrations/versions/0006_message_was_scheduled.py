"""message was_scheduled: the producer's scheduling decision, stored

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Rows stored before this revision: the history reader re-derived the
# decision with the default SMSQ_SCHEDULE_HORIZON, so the backfill uses the
# same one and their history reads as it did.
OLD_DEFAULT_HORIZON_SECONDS = 120


def upgrade() -> None:
    # A constant server default: existing rows and writers that do not name
    # the column (campaign COPY of an older process) keep working, and on
    # PostgreSQL adding the column rewrites no row.
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("was_scheduled", sa.Boolean(), server_default=sa.false(), nullable=False)
        )

    messages = sa.table(
        "messages",
        sa.column("was_scheduled", sa.Boolean()),
        sa.column("campaign_id", sa.String()),
        sa.column("send_at", sa.DateTime()),
        sa.column("created_at", sa.DateTime()),
    )
    if op.get_bind().dialect.name == "postgresql":
        horizon = sa.literal_column(
            f"interval '{OLD_DEFAULT_HORIZON_SECONDS} seconds'", sa.Interval()
        )
        beyond = messages.c.send_at > messages.c.created_at + horizon
    else:  # SQLite: times are text; julianday() is in days
        days = sa.func.julianday(messages.c.send_at) - sa.func.julianday(messages.c.created_at)
        beyond = days * 86_400 > OLD_DEFAULT_HORIZON_SECONDS
    # Only campaign messages: a single message's history has its first event.
    op.execute(
        messages.update()
        .where(messages.c.campaign_id.is_not(None), messages.c.send_at.is_not(None), beyond)
        .values(was_scheduled=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("was_scheduled")
