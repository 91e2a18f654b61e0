from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.status import CampaignStatus, MessageStatus
from models.tables import Campaign, Message, MessageEvent
from producer.campaign_control import cancel, pause, resume
from producer.errors import InvalidField

C = CampaignStatus
S = MessageStatus


@dataclass
class StartRecorder:
    started: list[str] = field(default_factory=list)

    def send_messages(self, ids: list[str], *, queue: str, eta: Any = None) -> bool:
        return True

    def start_campaign(self, campaign_id: str, *, eta: Any = None) -> bool:
        self.started.append(campaign_id)
        return True


def test_pause_then_resume_each_twice(
    session: Session, make_campaign: Callable[..., Campaign]
) -> None:
    campaign = make_campaign(status=C.RUNNING)
    enqueuer = StartRecorder()
    first, second = pause(session, campaign.id), pause(session, campaign.id)
    assert (first.status, first.changed) == ("paused", True)
    assert (second.status, second.changed) == ("paused", False)
    again = resume(session, campaign.id, enqueuer)
    assert (again.status, again.changed) == ("running", True)
    assert resume(session, campaign.id, enqueuer).changed is False
    assert enqueuer.started == [campaign.id, campaign.id]  # re-enqueueing is harmless


def test_resume_does_not_start_a_scheduled_campaign_early(
    session: Session, make_campaign: Callable[..., Campaign]
) -> None:
    campaign = make_campaign(status=C.SCHEDULED)
    enqueuer = StartRecorder()
    result = resume(session, campaign.id, enqueuer)
    assert result.status == "scheduled" and not result.changed and enqueuer.started == []


def test_cancel_cancels_what_is_unsent_only(
    session: Session,
    make_campaign: Callable[..., Campaign],
    make_message: Callable[..., Message],
) -> None:
    campaign = make_campaign(status=C.RUNNING)
    statuses = [S.QUEUED, S.QUEUED, S.SCHEDULED, S.SENDING, S.DELIVERED]
    messages = [make_message(campaign_id=campaign.id, status=s, kind="campaign") for s in statuses]
    result = cancel(session, campaign.id)
    assert (result.status, result.changed, result.cancelled_messages) == ("cancelled", True, 3)
    session.expire_all()
    after = [session.get(Message, m.id).status for m in messages]  # type: ignore[union-attr]
    assert after == ["cancelled", "cancelled", "cancelled", "sending", "delivered"]
    events = session.scalars(select(MessageEvent.source).where(MessageEvent.status == "cancelled"))
    assert list(events) == ["operator"] * 3
    again = cancel(session, campaign.id)
    assert (again.changed, again.cancelled_messages) == (False, 0)


def test_unknown_campaign_is_named(session: Session) -> None:
    with pytest.raises(InvalidField, match="campaign: no campaign with id 'nope'"):
        pause(session, "nope")
