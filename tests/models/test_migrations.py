"""The Alembic migration builds exactly the schema the models declare."""

from __future__ import annotations

import datetime as dt

from alembic import command
from sqlalchemy import MetaData, Table, insert, text

from models.db import make_engine
from models.migrate import alembic_config, downgrade, upgrade


def test_migrations_match_models_and_go_down_and_up(db_url: str) -> None:
    # db_url is already at head: autogenerate must find nothing to add.
    command.check(alembic_config(db_url))
    downgrade(db_url, "base")
    upgrade(db_url)
    command.check(alembic_config(db_url))


def test_0006_backfills_was_scheduled_with_the_old_default_horizon(db_url: str) -> None:
    # Rows from before 0006: their history was read with the default horizon
    # (120 s), so the backfill decides as that reader did.
    downgrade(db_url, "0005")
    engine = make_engine(db_url)
    created = dt.datetime(2026, 3, 1, 12, 0)  # naive UTC, as stored
    meta = MetaData()
    campaigns = Table("campaigns", meta, autoload_with=engine)
    messages = Table("messages", meta, autoload_with=engine)
    ahead = {"far": 121, "near": 120, "now": None}
    with engine.begin() as conn:
        conn.execute(
            insert(campaigns).values(
                id="c",
                name="c",
                text="Hi",
                provider="p",
                status="running",
                accepted=3,
                rejected=0,
                created_at=created,
            )
        )
        for n, (name, seconds) in enumerate([*ahead.items(), ("single", 600)]):
            conn.execute(
                insert(messages).values(
                    id=name,
                    to=f"+491701234567{n}",
                    text="Hi",
                    kind="campaign",
                    provider="p",
                    campaign_id=None if name == "single" else "c",
                    status="queued",
                    encoding="gsm7",
                    segments=1,
                    attempts=0,
                    stop_list=True,
                    flash=False,
                    client_id=name,
                    created_at=created,
                    updated_at=created,
                    send_at=None if seconds is None else created + dt.timedelta(seconds=seconds),
                )
            )
    upgrade(db_url)
    with engine.connect() as conn:
        decided = dict(conn.execute(text("SELECT id, was_scheduled FROM messages")).all())
    engine.dispose()
    assert {mid: bool(v) for mid, v in decided.items()} == {
        "far": True,
        "near": False,
        "now": False,
        "single": False,  # a single message's history has its first event
    }


def test_0007_adds_route_and_keeps_existing_rows(db_url: str) -> None:
    # Rows from before 0007 were stored for one account: they keep it, no route.
    downgrade(db_url, "0006")
    engine = make_engine(db_url)
    created = dt.datetime(2026, 3, 1, 12, 0)
    messages = Table("messages", MetaData(), autoload_with=engine)
    assert "route" not in messages.c
    with engine.begin() as conn:
        conn.execute(
            insert(messages).values(
                id="old",
                to="+4917012345670",
                text="Hi",
                kind="otp",
                provider="brand",
                status="queued",
                encoding="gsm7",
                segments=1,
                attempts=0,
                stop_list=True,
                flash=False,
                client_id="",
                created_at=created,
                updated_at=created,
            )
        )
    upgrade(db_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, provider, route FROM messages")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("old", "brand", None)]
