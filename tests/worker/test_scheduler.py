from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from models.status import CampaignStatus, MessageStatus
from models.tables import Campaign, Message
from worker.campaign_progress import queued_batches, start_campaign
from worker.scheduler import promote_due

S = MessageStatus
NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


def test_only_sends_inside_the_horizon_are_promoted(
    session: Session, make_message: Callable[..., Message]
) -> None:
    soon = make_message(status=S.SCHEDULED, send_at=at(30), kind="otp")
    later = make_message(status=S.SCHEDULED, send_at=at(600))
    promoted = promote_due(session, now=NOW, horizon=120)
    assert promoted.messages == {("otp", at(30)): [soon.id]}
    session.expire_all()
    assert session.get(Message, soon.id).status == S.QUEUED  # type: ignore[union-attr]
    assert session.get(Message, later.id).status == S.SCHEDULED  # type: ignore[union-attr]
    # Promoting again finds nothing: no second ETA task.
    assert promote_due(session, now=NOW, horizon=120).messages == {}


def test_a_scheduled_campaign_is_one_task_until_it_starts(
    session: Session, make_message: Callable[..., Message], make_campaign: Callable[..., Any]
) -> None:
    campaign = make_campaign(status=CampaignStatus.SCHEDULED, send_at=at(60))
    for _ in range(5):
        make_message(status=S.SCHEDULED, campaign_id=campaign.id, kind="campaign", send_at=at(60))
    promoted = promote_due(session, now=NOW, horizon=120)
    assert promoted.messages == {}  # its messages are not promoted one by one
    assert promoted.campaigns == [(campaign.id, at(60))]

    assert start_campaign(session, campaign.id, now=at(60))
    batches = list(queued_batches(session, campaign.id, 2))
    assert [len(b) for b in batches] == [2, 2, 1]


def test_a_paused_campaign_does_not_start(
    session: Session, make_message: Callable[..., Message], make_campaign: Callable[..., Any]
) -> None:
    campaign = make_campaign(status=CampaignStatus.PAUSED)
    make_message(status=S.QUEUED, campaign_id=campaign.id, kind="campaign")
    assert not start_campaign(session, campaign.id, now=NOW)
    session.expire_all()
    assert session.get(Campaign, campaign.id).status == CampaignStatus.PAUSED  # type: ignore[union-attr]
