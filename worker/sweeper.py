"""The sweeper: finds work whose broker message was lost, and stuck rows.

The DB row is the source of truth; a broker message is a wake-up call that
Redis may lose (a restart without persistence, ``FLUSHALL``). Every
``SMSQ_SWEEP_INTERVAL`` (Celery beat) the sweeper:

1. **Lost broker state.** smsq keeps a marker key in the broker's Redis. When
   it is gone, Redis lost its data and every due ``queued`` row is
   re-enqueued at once (and the marker set again).
2. **Orphaned queued rows.** A due ``queued`` row untouched for
   ``SMSQ_REQUEUE_AFTER`` is re-enqueued, but only when its queue is empty:
   while a queue has backlog (a big campaign draining slowly) its rows are
   simply waiting their turn, and re-enqueueing them would double the backlog.
3. **Expired leases.** A row still ``sending`` after its lease belongs to a
   worker that died mid-send: it may or may not have reached the provider, so
   it becomes ``unknown`` (never resent blindly). A dead owner's rows are
   normally recovered long before, within seconds (``worker.recovery``); this
   is the rule for claims whose owner cannot be judged. A row whose owner is
   known to be alive is left alone until its lease plus
   ``SMSQ_OUTCOME_WRITE_PATIENCE``: its worker may be waiting for the database
   to write what the provider answered.
4. **Unknown outcomes.** An ``unknown`` row with no delivery report after
   ``SMSQ_UNKNOWN_RESEND_AFTER`` is resent **once, with the same id**
   (panelsms ``transactionId``), when its account asks for delivery reports:
   the absence of a report is then evidence it was not sent. Without reports
   it stays ``unknown`` for an operator.
5. **Campaigns.** A running campaign with nothing left to send is finished; one
   whose start task was lost (messages still ``scheduled`` after its start) is
   started again. A campaign whose upload stopped -- its held ``accepted``
   message untouched for ``SMSQ_INGEST_STALL_AFTER``: the ingesting process
   died -- is cancelled first, its unsent rows with it
   (``worker.ingest_stall``).

Every step is idempotent: a duplicate task is harmless because sends are
claimed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from models.ledger import move_campaign_messages, move_where
from models.status import CampaignStatus, EventSource, MessageStatus
from models.tables import Campaign, Message
from smsq.core.names import QUEUE_FOR_KIND
from worker.campaign_progress import finish_campaigns
from worker.ingest_stall import cancel_stalled_uploads
from worker.unknown_resend import unknown_due

S = MessageStatus
UNSENT = (S.ACCEPTED, S.SCHEDULED, S.QUEUED)


@dataclass
class SweepPlan:
    """What the sweep decided; the caller enqueues it."""

    requeue: dict[str, list[str]] = field(default_factory=dict)  # queue -> ids
    resend_unknown: dict[str, list[str]] = field(default_factory=dict)  # queue -> ids
    restart_campaigns: list[str] = field(default_factory=list)
    stalled_uploads: list[str] = field(default_factory=list)  # campaigns cancelled
    leases_expired: int = 0
    broker_lost: bool = False

    @property
    def requeued(self) -> int:
        return sum(len(ids) for ids in self.requeue.values())


def sweep(
    session: Session,
    *,
    now: dt.datetime,
    requeue_after: float,
    unknown_resend_after: float,
    broker_lost: bool,
    queue_is_empty: Callable[[str], bool],
    resend_providers: Iterable[str],
    live_claims: Callable[[list[str]], Collection[str]] | None = None,
    live_patience: float = 0.0,
    dead_worker_resend_after: float | None = None,
    ingest_stall_after: float | None = None,
) -> SweepPlan:
    """Decide and record one sweep; commits. See the module docstring.

    ``live_claims`` tells which of the given lease tokens belong to a live
    owner (``worker.owners``); their rows get ``live_patience`` seconds more.
    ``ingest_stall_after`` (None: not looked at) is ``SMSQ_INGEST_STALL_AFTER``.
    """
    plan = SweepPlan(broker_lost=broker_lost)
    stale = now - dt.timedelta(seconds=requeue_after)

    # 3. Expired leases: sending -> unknown, unless a live owner may still write them.
    expired = [Message.lease_until < now]
    if live_claims is not None:
        tokens = session.scalars(
            select(Message.lease_token)
            .where(
                Message.status == S.SENDING,
                Message.lease_until < now,
                Message.lease_token.is_not(None),
            )
            .distinct()
        )
        alive = sorted(live_claims([t for t in tokens if t is not None]))
        if alive:
            expired.append(
                or_(
                    Message.lease_token.is_(None),
                    Message.lease_token.not_in(alive),
                    Message.lease_until < now - dt.timedelta(seconds=live_patience),
                )
            )
    lost = move_where(
        session,
        S.UNKNOWN,
        where=expired,
        from_statuses=[S.SENDING],
        values={
            "lease_until": None,
            "lease_token": None,
            "error_detail": "worker lost while sending (lease expired)",
        },
        source=EventSource.SWEEPER,
        now=now,
        detail="lease expired while sending: the outcome is unknown",
    )
    plan.leases_expired = len(lost)

    # 1 and 2. Queued rows to wake up again.
    running = select(Campaign.id).where(Campaign.status == CampaignStatus.RUNNING)
    due = and_(
        Message.status == S.QUEUED,
        or_(Message.send_at.is_(None), Message.send_at <= now),
        or_(Message.retry_at.is_(None), Message.retry_at <= now),
        # A paused campaign's rows wait for resume (which re-enqueues them).
        or_(Message.campaign_id.is_(None), Message.campaign_id.in_(running)),
    )
    if not broker_lost:
        due = and_(due, Message.updated_at < stale)
    candidates = session.execute(select(Message.id, Message.kind).where(due)).all()
    touched: list[str] = []
    for mid, kind in candidates:
        queue = QUEUE_FOR_KIND[kind]
        if broker_lost or queue_is_empty(queue):
            plan.requeue.setdefault(queue, []).append(mid)
            touched.append(mid)
    for chunk in _chunks(touched, 1000):
        # Touch them, so the next sweep waits another requeue_after.
        session.execute(update(Message).where(Message.id.in_(chunk)).values(updated_at=now))

    # 4. Unknown outcomes: resend once, same id, where reports are expected.
    plan.resend_unknown = unknown_due(
        session,
        now=now,
        providers=list(resend_providers),
        after=unknown_resend_after,
        dead_worker_after=dead_worker_resend_after,
    )

    # 5. Campaigns. One whose upload stopped is cancelled. A cancelled one's
    # rows that went back to queued after the cancel (a retry answered late,
    # a chunk of an upload still being read) are cancelled too.
    if ingest_stall_after is not None:
        plan.stalled_uploads = [
            s.campaign_id
            for s in cancel_stalled_uploads(session, now=now, stall_after=ingest_stall_after)
        ]
    cancelled = session.scalars(
        select(Campaign.id).where(
            Campaign.status == CampaignStatus.CANCELLED,
            Campaign.id.in_(select(Message.campaign_id).where(Message.status.in_(UNSENT))),
        )
    ).all()
    for campaign_id in cancelled:
        move_campaign_messages(
            session,
            campaign_id,
            from_statuses=UNSENT,
            to=S.CANCELLED,
            source=EventSource.SWEEPER,
            now=now,
        )
    running_ids = list(
        session.scalars(select(Campaign.id).where(Campaign.status == CampaignStatus.RUNNING))
    )
    finish_campaigns(session, running_ids, now=now)
    plan.restart_campaigns = list(
        session.scalars(
            select(Campaign.id).where(
                Campaign.status == CampaignStatus.RUNNING,
                Campaign.started_at < stale,
                Campaign.id.in_(select(Message.campaign_id).where(Message.status == S.SCHEDULED)),
            )
        )
    )
    session.commit()
    return plan


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
