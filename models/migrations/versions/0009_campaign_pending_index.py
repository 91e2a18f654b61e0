"""a campaign's rows still to send, indexed: finishing a campaign costs O(1)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

Issue 12 (``bench/million.py``): after every batch the worker asks whether
its campaign has any row left to send (``worker.campaign_progress.
finish_campaigns``). PostgreSQL answered by walking ``uq(campaign_id, to)``
past every row already sent, so the check grew with the campaign (0.3-0.4 s
at 500,000 sent) and a campaign cost O(N²). A partial index of the pending
rows answers it from the few rows still pending. Built ``CONCURRENTLY`` on
PostgreSQL, as 0008's, so sending goes on while it builds.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

NAME = "ix_messages_campaign_pending"
# models.tables.CAMPAIGN_PENDING, word for word (PostgreSQL matches the text).
PENDING = "status IN ('accepted', 'scheduled', 'queued', 'sending')"


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    with op.get_context().autocommit_block():
        if postgres and _invalid(bind):
            # A CONCURRENTLY build that failed half-way leaves an invalid index.
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {NAME}")
        elif postgres and _exists(bind):
            return  # built by an earlier, interrupted run of this migration
        op.create_index(
            NAME,
            "messages",
            ["campaign_id"],
            postgresql_concurrently=True,
            postgresql_where=sa.text(PENDING),
            sqlite_where=sa.text(PENDING),
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(NAME, table_name="messages", postgresql_concurrently=True)


def _exists(bind: sa.Connection) -> bool:
    return bind.execute(sa.text("SELECT to_regclass(:name)"), {"name": NAME}).scalar() is not None


def _invalid(bind: sa.Connection) -> bool:
    query = sa.text("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)")
    return bool(bind.execute(query, {"name": NAME}).scalar())
