"""The one resend of an ``unknown`` message, with the same id: which rows are due.

A row is ``unknown`` when its request may have reached the provider (a read
timeout, an unreadable answer, a lease that ran out, a worker that died while
its request was on the wire). Where the account sends delivery reports, the
absence of any report is evidence the provider does not have it, so it is
resent once (``worker.claims.claim(resend_unknown=True)``: at most once,
guarded by ``unknown_resends``) after ``SMSQ_UNKNOWN_RESEND_AFTER`` -- or
``SMSQ_DEAD_WORKER_RESEND_AFTER`` after their request could last have left
for the rows of a worker that died mid-request (``worker.recovery``): those
requests were mostly cut by the kill, and waiting five minutes for them would
stall a campaign. The sweep asks for
both; the recovery, every few seconds, for the dead worker's rows only.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ColumnElement, and_, exists, or_, select, text
from sqlalchemy.orm import Session

from models.status import EventSource, MessageStatus
from models.tables import UNKNOWN_UNRESENT, Message, MessageEvent
from smsq.core.names import QUEUE_FOR_KIND
from smsq.core.settings import Settings

S = MessageStatus

DIED_WHILE_SENDING = "worker died while sending"  # the row's error_detail (worker.recovery)


def dead_worker_wait(settings: Settings) -> float:
    """Seconds after the recovery made a dead worker's row ``unknown`` before
    its resend: ``SMSQ_DEAD_WORKER_RESEND_AFTER`` counts from when its request
    could last have left, and the recovery only learns of a death once the
    owner's key expired -- at least ``SMSQ_OWNER_TTL`` less one heartbeat
    period (a quarter of it) after the kill."""
    already = settings.owner_ttl * 3 / 4
    return max(0.0, settings.dead_worker_resend_after - already)


def unknown_due(
    session: Session,
    *,
    now: dt.datetime,
    providers: list[str],
    after: float | None,
    dead_worker_after: float | None = None,
) -> dict[str, list[str]]:
    """``unknown`` rows to resend once with the same id, by queue: of an account
    that sends delivery reports, never resent, with no report at all (even
    one we cannot map means the provider has it) for ``after`` seconds -- or
    ``dead_worker_after`` for rows a dead worker had on the wire
    (``worker.recovery``), whose request most likely never left. A wait of
    None leaves that kind of row out."""
    quiet: list[ColumnElement[bool]] = []
    if after is not None:
        quiet.append(Message.updated_at < now - dt.timedelta(seconds=after))
    if dead_worker_after is not None:
        since = now - dt.timedelta(seconds=dead_worker_after)
        quiet.append(and_(Message.error_detail == DIED_WHILE_SENDING, Message.updated_at < since))
    if not providers or not quiet:
        return {}
    rows = session.execute(
        select(Message.id, Message.kind).where(
            text(UNKNOWN_UNRESENT),  # status unknown, never resent: its partial index
            Message.provider.in_(providers),
            or_(*quiet),
            ~exists().where(
                MessageEvent.message_id == Message.id,
                MessageEvent.source == EventSource.DLR,
            ),
        )
    ).all()
    due: dict[str, list[str]] = {}
    for mid, kind in rows:
        due.setdefault(QUEUE_FOR_KIND[kind], []).append(mid)
    return due
