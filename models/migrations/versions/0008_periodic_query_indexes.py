"""indexes for the periodic queries: sends by time, final rows by end time

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

Issue 12: ``smsq fleet status`` counted the last minutes' sends and the last
hour's failures by scanning ``messages`` (O(table): seconds at 10 million
rows). On PostgreSQL the indexes are built ``CONCURRENTLY``, outside a
transaction, so sending goes on while they build on a large table; a build
that failed half-way leaves an invalid index, which is dropped and built
again here.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# name -> (columns, columns carried in the index for index-only reads)
INDEXES: dict[str, tuple[list[str], list[str]]] = {
    "ix_messages_sent_at": (["sent_at"], ["provider", "route"]),
    "ix_messages_status_finished_at": (["status", "finished_at"], []),
}


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    with op.get_context().autocommit_block():
        for name, (columns, include) in INDEXES.items():
            if postgres:
                op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            op.create_index(
                name, "messages", columns, postgresql_concurrently=True, postgresql_include=include
            )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name in INDEXES:
            op.drop_index(name, table_name="messages", postgresql_concurrently=True)
