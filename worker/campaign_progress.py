"""A campaign's life on the worker side: starting its sends, noticing its end.

A scheduled campaign is one task until it starts: its messages wait in the DB
as ``scheduled`` and :func:`start_campaign` turns them into ``queued`` at send
time, then the caller enqueues them batch by batch (streamed, never all ids in
memory). Resuming a paused campaign runs the same start: it re-enqueues what is
still ``queued``; a duplicate task is harmless because sends are claimed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator

from sqlalchemy import exists, select, text, update
from sqlalchemy.orm import Session

from models.ledger import move_campaign_messages
from models.status import CampaignStatus, EventSource, MessageStatus
from models.tables import CAMPAIGN_PENDING, Campaign, Message

S = MessageStatus


def start_campaign(session: Session, campaign_id: str, *, now: dt.datetime) -> bool:
    """Make a running campaign's scheduled messages ``queued``; commit.

    Returns False when the campaign is not running (paused, cancelled,
    finished or unknown): nothing to enqueue.
    """
    campaign = session.get(Campaign, campaign_id, with_for_update=True)
    if campaign is None:
        return False
    if campaign.status == CampaignStatus.SCHEDULED:
        campaign.status = CampaignStatus.RUNNING
        campaign.started_at = now
    if campaign.status != CampaignStatus.RUNNING:
        session.commit()
        return False
    move_campaign_messages(
        session,
        campaign_id,
        from_statuses=[S.SCHEDULED],
        to=S.QUEUED,
        source=EventSource.WORKER,
        now=now,
    )
    session.commit()
    return True


def queued_batches(session: Session, campaign_id: str, batch_size: int) -> Iterator[list[str]]:
    """The campaign's ``queued`` ids, ``batch_size`` at a time, streamed."""
    rows = session.execute(
        select(Message.id)
        .where(Message.campaign_id == campaign_id, Message.status == S.QUEUED)
        .order_by(Message.id)
        .execution_options(yield_per=batch_size)
    ).scalars()
    batch: list[str] = []
    for mid in rows:
        batch.append(mid)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def finish_campaigns(session: Session, campaign_ids: Iterable[str], *, now: dt.datetime) -> None:
    """Mark running campaigns with nothing left to send as ``finished``."""
    for campaign_id in campaign_ids:
        # In these literal words, so PostgreSQL answers from the partial index
        # of pending rows (not by walking every row the campaign has sent).
        pending = exists().where(Message.campaign_id == campaign_id, text(CAMPAIGN_PENDING))
        session.execute(
            update(Campaign)
            .where(
                Campaign.id == campaign_id,
                Campaign.status == CampaignStatus.RUNNING,
                ~pending,
            )
            .values(status=CampaignStatus.FINISHED, finished_at=now)
        )
