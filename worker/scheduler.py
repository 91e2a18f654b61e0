"""The promoter: hands scheduled sends to Celery shortly before their time.

With the Redis broker a task whose ETA is further than the visibility timeout
away is redelivered again and again, and every ETA task sits in a worker's
memory. So a scheduled message waits in the DB as ``scheduled``, and this
periodic job (Celery beat, every ``SMSQ_PROMOTE_INTERVAL``) moves the ones
due within ``SMSQ_SCHEDULE_HORIZON`` to ``queued`` and enqueues them with an
ETA at their send time. A scheduled campaign becomes one ETA task that fans
out at send time. The claim refuses a row before its ``send_at``, so even a
stray early task never sends early.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import update
from sqlalchemy.orm import Session

from models.ledger import move_where
from models.status import CampaignStatus, EventSource, MessageStatus
from models.tables import Campaign, Message

S = MessageStatus


@dataclass
class Promoted:
    # (kind, send_at) -> ids; enqueue each with eta=send_at
    messages: dict[tuple[str, dt.datetime | None], list[str]] = field(default_factory=dict)
    campaigns: list[tuple[str, dt.datetime | None]] = field(default_factory=list)


def promote_due(session: Session, *, now: dt.datetime, horizon: float) -> Promoted:
    """Move sends due before ``now + horizon`` out of ``scheduled``; commit."""
    limit = now + dt.timedelta(seconds=horizon)
    promoted = Promoted()
    rows = move_where(
        session,
        S.QUEUED,
        where=[Message.campaign_id.is_(None), Message.send_at <= limit],
        from_statuses=[S.SCHEDULED],
        returning=(Message.kind, Message.send_at),
        source=EventSource.WORKER,
        now=now,
        detail="promoted: due within the scheduling horizon",
    )
    for mid, kind, send_at in rows:
        promoted.messages.setdefault((kind, send_at), []).append(mid)
    campaigns = session.execute(
        update(Campaign)
        .where(Campaign.status == CampaignStatus.SCHEDULED, Campaign.send_at <= limit)
        .values(status=CampaignStatus.RUNNING, started_at=Campaign.send_at)
        .returning(Campaign.id, Campaign.send_at)
    ).all()
    promoted.campaigns = [(cid, send_at) for cid, send_at in campaigns]
    session.commit()
    return promoted
