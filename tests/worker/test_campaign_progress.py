"""A campaign finishes when nothing is left to send (worker/campaign_progress.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event, insert, select, text
from sqlalchemy.orm import Session

from models.db import make_engine, make_sessionmaker
from models.status import CampaignStatus as C
from models.status import MessageStatus as S
from models.tables import CAMPAIGN_PENDING_STATUSES, Campaign
from tests.worker.conftest import seed_campaign_rows
from worker.campaign_progress import finish_campaigns

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


def test_pending_statuses_are_message_statuses() -> None:
    assert {S(s) for s in CAMPAIGN_PENDING_STATUSES} == {
        S.ACCEPTED,
        S.SCHEDULED,
        S.QUEUED,
        S.SENDING,
    }


def test_a_campaign_finishes_only_once_nothing_is_left_to_send(
    session: Session,
    make_campaign: Callable[..., Campaign],
    make_message: Callable[..., Any],
) -> None:
    campaign = make_campaign(status=C.RUNNING)
    make_message(campaign_id=campaign.id, kind="campaign", status=S.DELIVERED)
    last = make_message(campaign_id=campaign.id, kind="campaign", status=S.SENDING)

    finish_campaigns(session, [campaign.id], now=NOW)
    session.commit()
    assert session.scalar(select(Campaign.status).where(Campaign.id == campaign.id)) == C.RUNNING

    session.execute(text("UPDATE messages SET status = 'sent' WHERE id = :id"), {"id": last.id})
    finish_campaigns(session, [campaign.id], now=NOW)
    session.commit()
    assert session.scalar(select(Campaign.status).where(Campaign.id == campaign.id)) == C.FINISHED


@pytest.mark.integration
def test_the_check_reads_the_pending_rows_not_every_row_sent(postgres_url: str) -> None:
    """Regression (bench/million.py): PostgreSQL walked uq(campaign_id, to)
    past every row already sent, 0.3-0.4 s per batch at 500,000 sent."""
    engine = make_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(
            insert(Campaign),
            [
                {
                    "id": "big",
                    "name": "big",
                    "text": "Sale",
                    "provider": "brand",
                    "status": C.RUNNING,
                }
            ],
        )
        seed_campaign_rows(conn, prefix="s", campaign="big", status=S.SENT, rows=20_000)
        conn.execute(text("UPDATE messages SET status = 'queued' WHERE id = 's0019999'"))
    with engine.connect() as conn:
        conn.execute(text("ANALYZE messages"))
        conn.commit()
    statements: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE CAMPAIGNS"):
            statements.append((statement, params))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        with make_sessionmaker(engine)() as s:
            finish_campaigns(s, ["big"], now=NOW)
            s.rollback()
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    [(statement, params)] = statements
    with engine.connect() as conn:
        plan = "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + statement, params))
        conn.rollback()
    engine.dispose()
    assert "ix_messages_campaign_pending" in plan, plan
