"""Retention: deleting what has been finished for longer than an operator keeps it
(``smsq db prune``, and the beat when ``SMSQ_PRUNE_AFTER_DAYS`` is set).

At 1,000 messages/s ``messages`` grows by 86 million rows a day; the
periodic queries stay fast (they read live rows by index) but the disk does
not. What is deleted, in batches of ``batch_size`` rows, each its own short
transaction so sending is never blocked behind a long delete:

- **messages** in a final status (delivered, undelivered, failed, expired,
  suppressed, rejected, cancelled) that ended before the cutoff, and
  ``sent`` messages sent before it (no report came within the retention:
  none will). A campaign's messages go only **with their campaign**: once
  the campaign is finished or cancelled, ended before the cutoff, and every
  one of its messages is past the retention itself (an ``unknown`` one, or
  one whose delivery report came late, keeps the whole campaign). A
  campaign's counts and report are computed from its messages, so a
  campaign is never left with part of its messages: it is kept whole or
  deleted whole, campaign row included. A message of a running or paused
  campaign is kept however old.
- their **events** (``message_events``) and their **webhook outbox** rows,
  with them; outbox rows of messages still kept are deleted once
  delivered or given up and created before the cutoff.
- **idempotency records** past ``SMSQ_IDEMPOTENCY_TTL``: they no longer
  answer a retried request anyway. Once a message is deleted, its own
  ``Idempotency-Key`` (stored on the message) is free again.
- ``unknown`` messages are kept: an operator decides about them
  (``smsq fleet retry``). Orphan delivery reports are already dropped after
  a day by the sweeper.

The deletes use the indexes of migration 0008 (``status, finished_at`` and
``sent_at``), so each batch costs O(batch), not O(table).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from sqlalchemy import ColumnElement, and_, delete, false, func, or_, select, tuple_
from sqlalchemy.orm import Session

from models.status import FINAL_STATUSES, CampaignStatus, MessageStatus
from models.tables import Campaign, IdempotencyRecord, Message, MessageEvent, WebhookDelivery

S = MessageStatus
FINISHED_CAMPAIGNS = (CampaignStatus.FINISHED, CampaignStatus.CANCELLED)
ENDED_WEBHOOKS = ("delivered", "failed")
BATCH_SIZE = 5_000


@dataclass
class Pruned:
    """What a prune deleted (or, in a dry run, would delete)."""

    cutoff: dt.datetime
    messages: int = 0
    events: int = 0
    campaigns: int = 0
    webhooks: int = 0
    idempotency_records: int = 0
    complete: bool = True
    """False: the time budget ran out first; the next run goes on."""


def _old_campaigns(cutoff: dt.datetime) -> ColumnElement[bool]:
    return and_(Campaign.status.in_(FINISHED_CAMPAIGNS), Campaign.finished_at < cutoff)


def _ended(cutoff: dt.datetime) -> ColumnElement[bool]:
    """The message itself is past the retention (whatever its campaign)."""
    return or_(
        and_(Message.status.in_(list(FINAL_STATUSES)), Message.finished_at < cutoff),
        and_(Message.status == S.SENT, Message.sent_at < cutoff),
    )


def _stays(cutoff: dt.datetime) -> ColumnElement[bool]:
    """A message that is not past the retention itself (NULLs: it stays)."""
    return ~func.coalesce(_ended(cutoff), false())


def _whole_campaigns(cutoff: dt.datetime) -> ColumnElement[bool]:
    """Campaigns that ended before the cutoff and keep none of their messages."""
    return and_(_old_campaigns(cutoff), ~Campaign.messages.any(_stays(cutoff)))


def _prunable(cutoff: dt.datetime) -> ColumnElement[bool]:
    """Messages past the retention (see the module docstring): a campaign's only
    when every message of the campaign is, so a campaign goes whole."""
    own_campaign = or_(
        Message.campaign_id.is_(None),
        Message.campaign_id.in_(select(Campaign.id).where(_whole_campaigns(cutoff))),
    )
    return and_(_ended(cutoff), own_campaign)


def _ended_webhooks(cutoff: dt.datetime) -> ColumnElement[bool]:
    return and_(WebhookDelivery.status.in_(ENDED_WEBHOOKS), WebhookDelivery.created_at < cutoff)


def prune(
    sessions: Callable[[], Session],
    *,
    older_than: dt.timedelta,
    idempotency_ttl: float,
    now: dt.datetime,
    batch_size: int = BATCH_SIZE,
    budget: float | None = None,
    dry_run: bool = False,
) -> Pruned:
    """Delete (``dry_run``: count) what ended more than ``older_than`` ago.

    ``budget``: stop starting new batches after this many seconds
    (``complete`` is then False); None: until done.
    """
    if older_than <= dt.timedelta(0):
        raise ValueError(f"older_than must be positive, got {older_than}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    cutoff = now - older_than
    result = Pruned(cutoff=cutoff)
    idempotent_before = now - dt.timedelta(seconds=idempotency_ttl)
    if dry_run:
        with sessions() as session:
            _count(session, result, idempotent_before)
        return result
    deadline = None if budget is None else time.monotonic() + budget

    def in_time() -> bool:
        if deadline is not None and time.monotonic() > deadline:
            result.complete = False
        return result.complete

    def batches(step: Callable[[Session], int]) -> int:
        """Run ``step`` in its own transaction until a batch comes back short."""
        total = 0
        while in_time():
            with sessions() as session:
                done = step(session)
                session.commit()
            total += done
            if done < batch_size:
                break
        return total

    # 1. Messages of no campaign.
    alone = and_(Message.campaign_id.is_(None), _ended(cutoff))
    batches(lambda session: _delete_messages(session, result, alone, batch_size))
    # 2. Campaigns whole, one at a time: their messages, then the campaign row.
    seen: set[str] = set()
    while in_time():
        with sessions() as session:
            found = [
                campaign_id
                for campaign_id in session.scalars(
                    select(Campaign.id).where(_whole_campaigns(cutoff)).limit(len(seen) + 100)
                )
                if campaign_id not in seen
            ]
        if not found:
            break
        for campaign_id in found:
            seen.add(campaign_id)
            own = and_(Message.campaign_id == campaign_id, _ended(cutoff))
            batches(partial(_delete_messages, result=result, where=own, batch_size=batch_size))
            if not in_time():
                break
            with sessions() as session:
                result.campaigns += _delete_empty_campaign(session, campaign_id)
                session.commit()
    # 3. Outbox rows of messages still kept, and spent idempotency records.
    result.webhooks += batches(lambda session: _delete_webhooks(session, cutoff, batch_size))
    result.idempotency_records += batches(
        lambda session: _delete_idempotency(session, idempotent_before, batch_size)
    )
    return result


def _delete_messages(
    session: Session, result: Pruned, where: ColumnElement[bool], batch_size: int
) -> int:
    """One batch of messages with their events and outbox rows; returns the messages."""
    # Locked (PostgreSQL: FOR UPDATE re-checks the condition on a row changed
    # meanwhile, e.g. re-queued by ``smsq fleet retry``; rows locked by a
    # writer are skipped for the next run), so what is deleted is what matched.
    ids = list(
        session.scalars(
            select(Message.id).where(where).limit(batch_size).with_for_update(skip_locked=True)
        )
    )
    if not ids:
        return 0
    result.events += _rowcount(
        session.execute(delete(MessageEvent).where(MessageEvent.message_id.in_(ids)))
    )
    result.webhooks += _rowcount(
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.message_id.in_(ids)))
    )
    result.messages += _rowcount(session.execute(delete(Message).where(Message.id.in_(ids))))
    return len(ids)


def _delete_empty_campaign(session: Session, campaign_id: str) -> int:
    """The campaign row, once none of its messages is left (1: deleted)."""
    return _rowcount(
        session.execute(
            delete(Campaign).where(Campaign.id == campaign_id, ~Campaign.messages.any())
        )
    )


def _delete_webhooks(session: Session, cutoff: dt.datetime, batch_size: int) -> int:
    ids = list(
        session.scalars(select(WebhookDelivery.id).where(_ended_webhooks(cutoff)).limit(batch_size))
    )
    if ids:
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(ids)))
    return len(ids)


def _delete_idempotency(session: Session, before: dt.datetime, batch_size: int) -> int:
    """Answered records past their TTL (a running one is never deleted)."""
    rows = session.execute(
        select(IdempotencyRecord.client_id, IdempotencyRecord.key)
        .where(IdempotencyRecord.created_at < before, IdempotencyRecord.status_code.is_not(None))
        .limit(batch_size)
    ).all()
    if rows:
        pair = tuple_(IdempotencyRecord.client_id, IdempotencyRecord.key)
        session.execute(delete(IdempotencyRecord).where(pair.in_([tuple(r) for r in rows])))
    return len(rows)


def _count(session: Session, result: Pruned, idempotent_before: dt.datetime) -> None:
    cutoff = result.cutoff
    prunable = select(Message.id).where(_prunable(cutoff)).subquery()
    result.messages = session.scalar(select(func.count()).select_from(prunable)) or 0
    result.events = (
        session.scalar(
            select(func.count()).where(MessageEvent.message_id.in_(select(prunable.c.id)))
        )
        or 0
    )
    result.webhooks = (
        session.scalar(
            select(func.count()).where(
                or_(
                    WebhookDelivery.message_id.in_(select(prunable.c.id)),
                    _ended_webhooks(cutoff),
                )
            )
        )
        or 0
    )
    result.campaigns = session.scalar(select(func.count()).where(_whole_campaigns(cutoff))) or 0
    result.idempotency_records = (
        session.scalar(
            select(func.count()).where(
                IdempotencyRecord.created_at < idempotent_before,
                IdempotencyRecord.status_code.is_not(None),
            )
        )
        or 0
    )


def _rowcount(result: object) -> int:
    count = getattr(result, "rowcount", 0)
    return int(count) if isinstance(count, int) and count >= 0 else 0
