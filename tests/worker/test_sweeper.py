from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from models.status import CampaignStatus, MessageStatus
from models.tables import Campaign, Message
from worker.sweeper import sweep

S = MessageStatus
NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)


def ago(seconds: float) -> dt.datetime:
    return NOW - dt.timedelta(seconds=seconds)


def run(
    session: Session,
    *,
    lost: bool = False,
    empty: bool = True,
    resend: tuple[str, ...] = ("panel",),
) -> Any:
    return sweep(
        session,
        now=NOW,
        requeue_after=60,
        unknown_resend_after=300,
        broker_lost=lost,
        queue_is_empty=lambda _queue: empty,
        resend_providers=resend,
    )


def test_orphaned_queued_rows_are_requeued_when_their_queue_is_empty(
    session: Session, make_message: Callable[..., Message]
) -> None:
    old = make_message(status=S.QUEUED, updated_at=ago(120))
    make_message(status=S.QUEUED, updated_at=ago(10))  # fresh: its task is on its way
    make_message(status=S.QUEUED, updated_at=ago(120), retry_at=NOW + dt.timedelta(seconds=5))
    assert run(session).requeue == {"transactional": [old.id]}
    # Touched: the next sweep leaves it alone for another requeue_after.
    assert run(session).requeue == {}


def test_backlog_is_left_alone(session: Session, make_message: Callable[..., Message]) -> None:
    make_message(status=S.QUEUED, updated_at=ago(3600))
    assert run(session, empty=False).requeue == {}


def test_lost_broker_data_requeues_everything_due(
    session: Session, make_message: Callable[..., Message]
) -> None:
    a = make_message(status=S.QUEUED, kind="otp")
    b = make_message(status=S.QUEUED, updated_at=ago(5))
    plan = run(session, lost=True, empty=False)
    assert plan.requeue == {"otp": [a.id], "transactional": [b.id]}


def test_expired_lease_becomes_unknown_then_is_resent_once(
    session: Session, make_message: Callable[..., Message]
) -> None:
    stuck = make_message(status=S.SENDING, lease_until=ago(1))
    make_message(status=S.SENDING, lease_until=NOW + dt.timedelta(seconds=30))
    plan = run(session)
    assert plan.leases_expired == 1
    session.expire_all()
    row = session.get(Message, stuck.id)
    assert row is not None and row.status == S.UNKNOWN
    row.updated_at = ago(301)
    session.commit()
    assert run(session).resend_unknown == {"transactional": [stuck.id]}
    assert run(session, resend=()).resend_unknown == {}  # no reports expected: leave it
    row.unknown_resends = 1
    session.commit()
    assert run(session).resend_unknown == {}  # only once


def test_campaigns_finish_or_restart(
    session: Session, make_message: Callable[..., Message], make_campaign: Callable[..., Any]
) -> None:
    done = make_campaign(status=CampaignStatus.RUNNING, started_at=ago(10))
    make_message(campaign_id=done.id, status=S.DELIVERED, kind="campaign")
    stalled = make_campaign(status=CampaignStatus.RUNNING, started_at=ago(600))
    make_message(campaign_id=stalled.id, status=S.SCHEDULED, kind="campaign")
    plan = run(session)
    assert plan.restart_campaigns == [stalled.id]
    session.expire_all()
    assert session.get(Campaign, done.id).status == CampaignStatus.FINISHED  # type: ignore[union-attr]


def test_no_resend_when_the_provider_reported_anything(
    session: Session, make_message: Callable[..., Message]
) -> None:
    from models.ledger import apply_status
    from models.status import EventSource

    message = make_message(status=S.SENT, updated_at=ago(400))
    # An unmappable report moved it to unknown: the provider has the message.
    apply_status(session, message, S.UNKNOWN, source=EventSource.DLR, detail="unmapped 'X'")
    message.updated_at = ago(400)
    session.commit()
    assert run(session).resend_unknown == {}


def test_a_cancelled_campaigns_late_queued_rows_are_cancelled_not_requeued(
    session: Session, make_message: Callable[..., Message], make_campaign: Callable[..., Any]
) -> None:
    """Regression: a retry answered after the cancel put the row back in 'queued'."""
    cancelled = make_campaign(status=CampaignStatus.CANCELLED)
    late = make_message(
        campaign_id=cancelled.id, status=S.QUEUED, kind="campaign", updated_at=ago(120)
    )
    paused = make_campaign(status=CampaignStatus.PAUSED)
    waiting = make_message(
        campaign_id=paused.id, status=S.QUEUED, kind="campaign", updated_at=ago(120)
    )
    plan = run(session)
    assert plan.requeue == {}  # neither is re-enqueued
    session.expire_all()
    assert session.get(Message, late.id).status == S.CANCELLED  # type: ignore[union-attr]
    assert session.get(Message, waiting.id).status == S.QUEUED  # type: ignore[union-attr]
