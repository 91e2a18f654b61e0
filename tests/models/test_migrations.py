"""The Alembic migration builds exactly the schema the models declare."""

from __future__ import annotations

from alembic import command

from models.migrate import alembic_config, downgrade, upgrade


def test_migrations_match_models_and_go_down_and_up(db_url: str) -> None:
    # db_url is already at head: autogenerate must find nothing to add.
    command.check(alembic_config(db_url))
    downgrade(db_url, "base")
    upgrade(db_url)
    command.check(alembic_config(db_url))
