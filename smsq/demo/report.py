"""What the demo measures, read from the database: the source of truth.

A :class:`Snapshot` is taken twice a second for the live view; the
:func:`summary` at the end is what ``demo-report.json`` holds. Every figure
comes from message rows and their events, so the demo shows what an operator
would find in the database, not what the demo believes it did.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.status import MessageKind, MessageStatus
from models.tables import Message, MessageEvent

S = MessageStatus
# Not yet handed to the provider (or handed over and waiting for its answer).
PENDING = (S.ACCEPTED, S.SCHEDULED, S.QUEUED, S.SENDING)
# A retry is stored as a move back to 'queued' whose detail starts like this
# (worker.outcomes).
RETRY_DETAIL = "retry in %"


@dataclass(frozen=True)
class Snapshot:
    """The campaign's counts by status, its sent total and the retries by code."""

    by_status: dict[str, int]
    sent: int
    """Campaign messages with a ``sent_at``: handed to the provider."""
    retries: dict[str, int] = field(default_factory=dict)
    pending: int = 0
    """Messages of any kind not yet answered by the provider."""


def snapshot(session: Session, campaign_id: str, *, since: dt.datetime) -> Snapshot:
    """``pending`` counts the messages accepted ``since`` (the demo's own, on a
    database that may hold others)."""
    rows = session.execute(
        select(Message.status, func.count())
        .where(Message.campaign_id == campaign_id)
        .group_by(Message.status)
    ).all()
    sent = session.scalar(
        select(func.count())
        .select_from(Message)
        .where(Message.campaign_id == campaign_id, Message.sent_at.is_not(None))
    )
    pending = session.scalar(
        select(func.count())
        .select_from(Message)
        .where(Message.status.in_(PENDING), Message.created_at >= since)
    )
    return Snapshot(
        by_status={status: count for status, count in rows},
        sent=sent or 0,
        retries=retries_by_code(session, since=since),
        pending=pending or 0,
    )


def retries_by_code(session: Session, *, since: dt.datetime) -> dict[str, int]:
    rows = session.execute(
        select(MessageEvent.provider_code, func.count())
        .where(
            MessageEvent.status == S.QUEUED,
            MessageEvent.detail.like(RETRY_DETAIL),
            MessageEvent.created_at >= since,
        )
        .group_by(MessageEvent.provider_code)
    ).all()
    return {("other" if code is None else str(code)): count for code, count in rows}


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def otp_latencies(session: Session, *, since: dt.datetime) -> list[float]:
    """Seconds from acceptance to the provider's acceptance, per OTP sent."""
    rows = session.execute(
        select(Message.created_at, Message.sent_at).where(
            Message.kind == MessageKind.OTP,
            Message.sent_at.is_not(None),
            Message.created_at >= since,
        )
    ).all()
    return [(sent - created).total_seconds() for created, sent in rows if sent is not None]


def summary(
    session: Session,
    *,
    campaign_id: str,
    scheduled_id: str,
    otp_count: int,
    started: dt.datetime,
    finished: dt.datetime,
    rate_changes: list[dict[str, Any]],
    simulator: dict[str, Any],
    completed: bool,
) -> dict[str, Any]:
    """The report: what was sent, delivered, failed, retried; speed and precision."""
    snap = snapshot(session, campaign_id, since=started)
    first_sent, last_sent = session.execute(
        select(func.min(Message.sent_at), func.max(Message.sent_at)).where(
            Message.campaign_id == campaign_id
        )
    ).one()
    sending_seconds = (last_sent - first_sent).total_seconds() if first_sent and last_sent else 0.0
    total = sum(snap.by_status.values())
    delivered = snap.by_status.get(S.DELIVERED, 0)
    failed = sum(snap.by_status.get(s, 0) for s in (S.FAILED, S.EXPIRED, S.UNDELIVERED))
    latencies = otp_latencies(session, since=started)
    scheduled = session.get(Message, scheduled_id)
    error = None
    if scheduled is not None and scheduled.sent_at is not None and scheduled.send_at is not None:
        error = (scheduled.sent_at - scheduled.send_at).total_seconds()

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 1)

    return {
        "completed": completed,
        "duration_s": round((finished - started).total_seconds(), 2),
        "campaign": {
            "id": campaign_id,
            "recipients": total,
            "sent": snap.sent,
            "delivered": delivered,
            "failed": failed,
            "by_status": snap.by_status,
            "throughput_per_s": round(snap.sent / sending_seconds, 1) if sending_seconds else None,
            "sending_s": round(sending_seconds, 2),
        },
        "retries_by_code": snap.retries,
        "rate_changes": rate_changes,
        "otp": {
            "submitted": otp_count,
            "sent": len(latencies),
            "latency_ms_p50": ms(percentile(latencies, 0.50)),
            "latency_ms_p99": ms(percentile(latencies, 0.99)),
            "latency_ms_max": ms(max(latencies, default=None)),
        },
        "scheduled": {
            "id": scheduled_id,
            "status": scheduled.status if scheduled is not None else None,
            "send_at": _iso(scheduled.send_at if scheduled else None),
            "sent_at": _iso(scheduled.sent_at if scheduled else None),
            "send_time_error_ms": ms(error),
        },
        "panelsms_simulator": {
            "accepted": simulator.get("accepted"),
            "rejected_by_code": simulator.get("rejected", {}).get("by_code", {}),
            "requests": simulator.get("requests", {}).get("total"),
        },
    }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
