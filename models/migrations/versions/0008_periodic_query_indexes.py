"""indexes for the periodic queries: sends by time, final rows by end time,
unknown rows never resent

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

Issue 12: ``smsq fleet status`` counted the last minutes' sends and the last
hour's failures by scanning ``messages`` (O(table): seconds at 10 million
rows), and the sweeper read every ``unknown`` row ever kept to find the few
never resent. On PostgreSQL the indexes are built ``CONCURRENTLY``, outside a
transaction, so sending goes on while they build on a large table; a build
that failed half-way leaves an invalid index, which is dropped and built
again here.
"""

from __future__ import annotations

from typing import NamedTuple

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UNRESENT = "status = 'unknown' AND unknown_resends = 0"  # models.tables.UNKNOWN_UNRESENT


class NewIndex(NamedTuple):
    columns: list[str]
    include: tuple[str, ...] = ()  # carried for index-only reads
    where: str | None = None  # a partial index


INDEXES: dict[str, NewIndex] = {
    "ix_messages_sent_at": NewIndex(["sent_at"], include=("provider", "route")),
    "ix_messages_status_finished_at": NewIndex(["status", "finished_at"]),
    "ix_messages_unknown_unresent": NewIndex(["provider", "updated_at"], where=UNRESENT),
}


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    with op.get_context().autocommit_block():
        for name, index in INDEXES.items():
            if postgres and _invalid(bind, name):
                # A CONCURRENTLY build that failed half-way leaves an invalid index.
                op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            elif postgres and _exists(bind, name):
                continue  # built by an earlier, interrupted run of this migration
            where = None if index.where is None else sa.text(index.where)
            op.create_index(
                name,
                "messages",
                index.columns,
                postgresql_concurrently=True,
                postgresql_include=list(index.include),
                postgresql_where=where,
                sqlite_where=where,
            )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name in INDEXES:
            op.drop_index(name, table_name="messages", postgresql_concurrently=True)


def _exists(bind: sa.Connection, name: str) -> bool:
    return bind.execute(sa.text("SELECT to_regclass(:name)"), {"name": name}).scalar() is not None


def _invalid(bind: sa.Connection, name: str) -> bool:
    query = sa.text("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)")
    return bool(bind.execute(query, {"name": name}).scalar())
