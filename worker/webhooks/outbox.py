"""The webhook outbox: applied status events become ``webhook_deliveries`` rows.

The database is the truth, as for messages: a status change is an applied
``message_events`` row written in the same transaction as the change, and this
periodic job (beat, every ``SMSQ_PROMOTE_INTERVAL``) turns each such event of
a message with a callback URL (its own, or its API key's default) into one
delivery row, then enqueues it. ``event_id`` is unique, so an event makes one
delivery however often or concurrently this runs.

Why a look-back instead of a "highest id done" cursor: event ids are taken
when a row is inserted but become visible when its transaction commits, and
on PostgreSQL a transaction holding a lower id can commit after one holding a
higher id. So each run looks at every event above a *settled* id, the highest
id whose event is older than ``SETTLE`` (any lower id has committed by then),
and the anti-join against existing deliveries skips what is done. The settled
id is kept in the worker process (a restart finds it again by binary search on
the primary key, ``STARTUP_LOOKBACK`` back); losing it costs one wider scan,
never a webhook inside that window.

The same job re-enqueues pending deliveries whose time passed long ago: the
broker message that should have run them was lost.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import exists, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models.ids import new_id
from models.tables import (
    ApiKey,
    Base,
    DisabledWebhookEndpoint,
    Message,
    MessageEvent,
    WebhookDelivery,
)
from worker.webhooks.payload import StatusChange, build_payload

# An event whose id was taken this long ago has committed (or never will).
SETTLE = dt.timedelta(minutes=2)
# A process that starts without a settled id looks back this far.
STARTUP_LOOKBACK = dt.timedelta(hours=1)
# A pending delivery this far past its time lost its broker message.
RECOVER_AFTER = dt.timedelta(minutes=5)
BATCH = 1000


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up: 4xx, redirect, blocked address, 24 h of errors
    GONE = "gone"  # the endpoint answered 410: disabled


@dataclass
class OutboxCursor:
    """Events with an id at or below ``settled`` are all made into deliveries."""

    settled: int | None = None


@dataclass
class Dispatched:
    created: list[str] = field(default_factory=list)  # new delivery ids, to enqueue
    requeued: list[str] = field(default_factory=list)  # lost ones, to enqueue again


def new_delivery_id() -> str:
    """The ``webhook-id``: ``msg_`` and a time-ordered UUIDv7 in hex."""
    return "msg_" + new_id().replace("-", "")


def dispatch(
    session: Session, cursor: OutboxCursor, *, now: dt.datetime, batch: int = BATCH
) -> Dispatched:
    """Make deliveries for new events and pick up lost ones; commits."""
    result = Dispatched()
    result.created = create_deliveries(session, cursor, now=now, batch=batch)
    result.requeued = requeue_lost(session, now=now, batch=batch)
    return result


def create_deliveries(
    session: Session, cursor: OutboxCursor, *, now: dt.datetime, batch: int = BATCH
) -> list[str]:
    """One pending delivery per applied event not yet made into one; commits."""
    if cursor.settled is None:
        cursor.settled = first_event_id_since(session, now - STARTUP_LOOKBACK) - 1
    floor = cursor.settled
    url = func.coalesce(func.nullif(Message.callback_url, ""), ApiKey.webhook_url)
    rows = session.execute(
        select(
            MessageEvent.id,
            MessageEvent.status,
            MessageEvent.created_at,
            MessageEvent.provider_code,
            MessageEvent.detail,
            Message,
            url,
        )
        .join(Message, Message.id == MessageEvent.message_id)
        .outerjoin(ApiKey, ApiKey.id == Message.client_id)
        .where(
            MessageEvent.id > floor,
            MessageEvent.applied.is_(True),
            url.is_not(None),
            ~exists().where(WebhookDelivery.event_id == MessageEvent.id),
            ~exists().where(DisabledWebhookEndpoint.url == url),
        )
        .order_by(MessageEvent.id)
        .limit(batch)
    ).all()
    deliveries = [
        {
            "id": new_delivery_id(),
            "event_id": event_id,
            "message_id": message.id,
            "client_id": message.client_id,
            "url": target,
            "payload": build_payload(_change(event_id, status, at, code, detail, message), now=now),
            "status": DeliveryStatus.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for event_id, status, at, code, detail, message, target in rows
    ]
    created = insert_ignoring_conflicts(
        session, WebhookDelivery, deliveries, conflict=["event_id"], returning=WebhookDelivery.id
    )
    settled = session.scalar(
        select(func.max(MessageEvent.id)).where(
            MessageEvent.id > floor, MessageEvent.created_at < now - SETTLE
        )
    )
    if settled is not None:
        # A full batch may have left events below `settled` for the next run.
        cursor.settled = min(settled, rows[-1][0]) if len(rows) == batch else settled
    session.commit()
    return created


def requeue_lost(session: Session, *, now: dt.datetime, batch: int = BATCH) -> list[str]:
    """Pending deliveries long past their time; their time is reset to now,
    so each is re-enqueued once per ``RECOVER_AFTER``, not on every run."""
    lost = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at < now - RECOVER_AFTER,
        )
        .limit(batch)
    )
    ids = list(
        session.scalars(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id.in_(lost.scalar_subquery()),
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.next_attempt_at < now - RECOVER_AFTER,
            )
            .values(next_attempt_at=now)
            .returning(WebhookDelivery.id)
        )
    )
    session.commit()
    return ids


def first_event_id_since(session: Session, since: dt.datetime) -> int:
    """The lowest event id created at or after ``since`` (ids follow time
    closely enough), found with a binary search of primary-key lookups rather
    than a scan of a table without an index on ``created_at``."""
    low = session.scalar(select(func.min(MessageEvent.id))) or 0
    high = session.scalar(select(func.max(MessageEvent.id)))
    if high is None:
        return 1
    high += 1
    while low < high:
        mid = (low + high) // 2
        at = session.scalar(
            select(MessageEvent.created_at)
            .where(MessageEvent.id >= mid)
            .order_by(MessageEvent.id)
            .limit(1)
        )
        if at is None or at >= since:
            high = mid
        else:
            low = mid + 1
    return low


def _change(
    event_id: int,
    status: str,
    at: dt.datetime,
    code: int | None,
    detail: str | None,
    message: Message,
) -> StatusChange:
    # The event's own code and detail; for the message's current status the
    # row's error fields fill what the event did not record.
    current = status == message.status
    return StatusChange(
        event_id=event_id,
        status=status,
        at=at,
        message_id=message.id,
        to=message.to,
        provider=message.provider,
        route=message.route,
        provider_message_id=message.provider_message_id,
        error_code=code if code is not None or not current else message.error_code,
        error_detail=detail if detail is not None or not current else message.error_detail,
        campaign_id=message.campaign_id,
        segments=message.segments,
    )


def insert_ignoring_conflicts(
    session: Session,
    table: type[Base],
    rows: list[dict[str, Any]],
    *,
    conflict: list[str],
    returning: Any = None,
) -> list[Any]:
    """Insert ``rows``, skipping those that clash on ``conflict`` (another
    dispatcher or worker got there first); the ``returning`` column of the
    rows inserted."""
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(table).on_conflict_do_nothing(index_elements=conflict)
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=conflict)
    else:  # pragma: no cover - smsq runs on the two above
        stmt = insert(table)
    if returning is None:
        session.execute(stmt, rows)
        return []
    return list(session.scalars(stmt.returning(returning), rows))
