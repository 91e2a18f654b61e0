"""Alembic environment. The URL comes from ``models.migrate`` (which smsq
feeds from ``SMSQ_DATABASE_URL``), or from that variable when ``alembic`` is
run by hand with ``-c models/migrations/alembic.ini``."""

from __future__ import annotations

import os

from alembic import context

from models.db import make_engine, normalize_url
from models.tables import Base

config = context.config
url = config.get_main_option("sqlalchemy.url") or os.environ.get(
    "SMSQ_DATABASE_URL", "sqlite:///./smsq.db"
)


def run_offline() -> None:
    context.configure(url=normalize_url(url), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
