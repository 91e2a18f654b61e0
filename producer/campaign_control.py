"""Pausing, resuming and cancelling a campaign, from any process.

Each is one conditional update (``WHERE status IN (allowed sources)``), so
calling it twice, or from two processes at once, does the move once and
reports the campaign's status either way. The worker's claim only takes
messages of a ``running`` campaign, so:

- ``pause``: no new sends start; batches already sending finish.
- ``resume``: ``running`` again, and the campaign's start task is enqueued,
  which re-enqueues what is still ``queued`` (a duplicate task is harmless:
  sends are claimed). If the broker is down, the sweeper picks it up.
- ``cancel``: unsent messages (accepted, scheduled, queued) become
  ``cancelled``, with an event each; in-flight sends finish.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models.ledger import move_campaign_messages
from models.status import CampaignStatus, EventSource, MessageStatus, campaign_can_move
from models.tables import Campaign, utcnow
from producer.errors import InvalidField
from smsq.core.publisher import Publisher

C = CampaignStatus
S = MessageStatus
UNSENT = (S.ACCEPTED, S.SCHEDULED, S.QUEUED)


@dataclass(frozen=True, slots=True)
class ControlResult:
    campaign_id: str
    status: str  # the campaign's status afterwards
    changed: bool  # False: it was already there (or could not move)
    cancelled_messages: int = 0


def _move(
    session: Session,
    campaign_id: str,
    to: CampaignStatus,
    only_from: tuple[CampaignStatus, ...] | None = None,
    **values: object,
) -> bool:
    sources = [
        c for c in CampaignStatus if campaign_can_move(c, to) and (not only_from or c in only_from)
    ]
    result = session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status.in_(sources))
        .values(status=to, **values)
    )
    return bool(getattr(result, "rowcount", 0))


def _status(session: Session, campaign_id: str) -> str:
    status = session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
    if status is None:
        raise InvalidField("campaign", f"no campaign with id {campaign_id!r}")
    return status


def pause(session: Session, campaign_id: str) -> ControlResult:
    _status(session, campaign_id)
    changed = _move(session, campaign_id, C.PAUSED, (C.RUNNING,))
    session.commit()
    return ControlResult(campaign_id, _status(session, campaign_id), changed)


def resume(session: Session, campaign_id: str, enqueuer: Publisher) -> ControlResult:
    _status(session, campaign_id)
    changed = _move(session, campaign_id, C.RUNNING, (C.PAUSED,))
    session.commit()
    status = _status(session, campaign_id)
    if status == C.RUNNING:
        enqueuer.start_campaign(campaign_id)
    return ControlResult(campaign_id, status, changed)


def cancel(session: Session, campaign_id: str, *, now: dt.datetime | None = None) -> ControlResult:
    _status(session, campaign_id)
    now = now or utcnow()
    changed = _move(session, campaign_id, C.CANCELLED, finished_at=now)
    cancelled = move_campaign_messages(
        session,
        campaign_id,
        from_statuses=UNSENT,
        to=S.CANCELLED,
        source=EventSource.OPERATOR,
        now=now,
    )
    session.commit()
    return ControlResult(
        campaign_id,
        _status(session, campaign_id),
        changed,
        cancelled_messages=cancelled,
    )
