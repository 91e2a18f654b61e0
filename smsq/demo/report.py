"""What the demo measures, read from the database: the source of truth.

A :class:`Snapshot` is taken twice a second for the live view; the
:func:`summary` at the end is what ``demo-report.json`` holds. Every figure
comes from message rows and their events, so the demo shows what an operator
would find in the database, not what the demo believes it did; only what the
providers alone can tell comes from the simulators' own counts (requests,
refusals by code, and duplicates: sends to one number beyond the first).

The campaign goes by a route (docs/routing.md): each row's ``provider`` is
the account its last attempt went to, so counts by account, and the first
``sent_at`` on each account around the demo's outage, say when the traffic
moved and when it came back.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.status import MessageKind, MessageStatus
from models.tables import Message, MessageEvent
from smsq.demo.outage import OutageTimes

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


def otp_latencies(
    session: Session, *, since: dt.datetime, until: dt.datetime | None = None
) -> list[float]:
    """Seconds from acceptance to the provider's acceptance, per OTP sent
    (accepted from ``since``, and before ``until`` when given)."""
    query = select(Message.created_at, Message.sent_at).where(
        Message.kind == MessageKind.OTP,
        Message.sent_at.is_not(None),
        Message.created_at >= since,
    )
    if until is not None:
        query = query.where(Message.created_at < until)
    rows = session.execute(query).all()
    return [(sent - created).total_seconds() for created, sent in rows if sent is not None]


def campaign_by_account(
    session: Session, campaign_id: str, *, sent_from: dt.datetime | None = None
) -> dict[str, int]:
    """The campaign's messages handed to a provider (since ``sent_from``), by the
    account that carried them: ``provider`` names the account of a routed
    message's last attempt (docs/routing.md)."""
    query = (
        select(Message.provider, func.count())
        .where(Message.campaign_id == campaign_id, Message.sent_at.is_not(None))
        .group_by(Message.provider)
    )
    if sent_from is not None:
        query = query.where(Message.sent_at >= sent_from)
    return {provider: count for provider, count in session.execute(query).all()}


def first_sent_on(
    session: Session, campaign_id: str, account: str, *, sent_from: dt.datetime
) -> dt.datetime | None:
    """When the campaign's first message on ``account`` at or after ``sent_from`` went out."""
    found: dt.datetime | None = session.scalar(
        select(func.min(Message.sent_at)).where(
            Message.campaign_id == campaign_id,
            Message.provider == account,
            Message.sent_at >= sent_from,
        )
    )
    return found


def failover(
    session: Session,
    campaign_id: str,
    *,
    started: dt.datetime,
    outage: OutageTimes,
    account: str,
    fallback: str,
) -> dict[str, Any]:
    """The outage of ``account`` and what the campaign's route did about it, in
    seconds from the demo's start, from the rows' ``sent_at``: the first
    message on ``fallback`` after the outage began (time to fail over) and
    the first on ``account`` again after it ended (time to come back)."""

    def since_start(moment: dt.datetime | None) -> float | None:
        return None if moment is None else round((moment - started).total_seconds(), 2)

    def between(later: dt.datetime | None, earlier: dt.datetime | None) -> float | None:
        if later is None or earlier is None:
            return None
        return round((later - earlier).total_seconds(), 2)

    on_fallback = first_sent_on(session, campaign_id, fallback, sent_from=outage.started)
    back = (
        first_sent_on(session, campaign_id, account, sent_from=outage.ended)
        if outage.ended is not None
        else None
    )
    during = campaign_by_account(session, campaign_id, sent_from=outage.started)
    if outage.ended is not None:
        after = campaign_by_account(session, campaign_id, sent_from=outage.ended)
        during = {a: n - after.get(a, 0) for a, n in during.items() if n - after.get(a, 0)}
    return {
        "account": account,
        "fallback": fallback,
        "started_s": since_start(outage.started),
        "down_s": since_start(outage.down),
        "ended_s": since_start(outage.ended),
        "length_s": between(outage.ended, outage.started),
        "cut_short": outage.cut_short,
        "error": outage.error,
        "first_on_fallback_s": since_start(on_fallback),
        "failover_s": between(on_fallback, outage.started),
        "first_back_s": since_start(back),
        "back_s": between(back, outage.ended),
        "campaign_during_by_account": during,
    }


def breaker_times(outage: dict[str, Any], changes: list[dict[str, Any]]) -> dict[str, Any]:
    """When the account's breaker was first seen open after the outage began,
    and closed again after that (seconds from the start, sampled)."""
    opened = next(
        (c["at_s"] for c in changes if c["state"] == "open" and c["at_s"] >= outage["started_s"]),
        None,
    )
    closed = None
    if opened is not None:
        closed = next(
            (c["at_s"] for c in changes if c["state"] == "closed" and c["at_s"] > opened), None
        )
    return {"breaker_open_s": opened, "breaker_closed_s": closed}


def duplicates_at_providers(stats: Iterable[dict[str, Any]]) -> int:
    """Sends beyond the first to one number, over every simulator together
    (``per_number`` of each: a message sent on two accounts counts too)."""
    total: Counter[str] = Counter()
    for one in stats:
        total.update(one.get("per_number", {}))
    return sum(count - 1 for count in total.values() if count > 1)


def simulator_summary(stats: dict[str, Any]) -> dict[str, Any]:
    return {
        "accepted": stats.get("accepted"),
        "rejected_by_code": stats.get("rejected", {}).get("by_code", {}),
        "requests": stats.get("requests", {}).get("total"),
    }


def summary(
    session: Session,
    *,
    campaign_id: str,
    scheduled_id: str,
    otp_count: int,
    started: dt.datetime,
    finished: dt.datetime,
    rate_changes: list[dict[str, Any]],
    simulators: dict[str, dict[str, Any]],
    completed: bool,
    route: dict[str, Any] | None = None,
    outage: OutageTimes | None = None,
    breaker_changes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The report: what was sent, delivered, failed, retried; speed and precision;
    the campaign's accounts and, with ``outage``, its failover.

    ``simulators``: each simulator's ``stats()``, by adapter. ``route``: the
    campaign's route (``name`` and ``accounts``, in failover order).
    ``breaker_changes``: the route's first account's circuit breaker, each
    change as the live view sampled it (every 0.5 s)."""
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

    accounts = list(route["accounts"]) if route else []
    by_account = campaign_by_account(session, campaign_id)
    rank = {account: i for i, account in enumerate(accounts)}  # route order, then the rest
    in_order = sorted(by_account, key=lambda a: (rank.get(a, len(rank)), a))
    routing: dict[str, Any] = {
        "route": route["name"] if route else None,
        "accounts": accounts,
        "campaign_by_account": {a: by_account[a] for a in in_order},
        "outage": None,
        "breaker_changes": breaker_changes or [],
    }
    during_outage: list[float] = []
    if route and outage is not None:
        account, fallback = route["accounts"][0], route["accounts"][1]
        routing["outage"] = failover(
            session,
            campaign_id,
            started=started,
            outage=outage,
            account=account,
            fallback=fallback,
        )
        routing["outage"].update(breaker_times(routing["outage"], breaker_changes or []))
        during_outage = otp_latencies(session, since=outage.started, until=outage.ended)

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
            "during_outage": {
                "sent": len(during_outage),
                "latency_ms_max": ms(max(during_outage, default=None)),
            },
        },
        "scheduled": {
            "id": scheduled_id,
            "status": scheduled.status if scheduled is not None else None,
            "send_at": _iso(scheduled.send_at if scheduled else None),
            "sent_at": _iso(scheduled.sent_at if scheduled else None),
            "send_time_error_ms": ms(error),
        },
        "routing": routing,
        "panelsms_simulator": simulator_summary(simulators.get("panelsms", {})),
        "brand_simulator": simulator_summary(simulators.get("brand", {})),
        "duplicates_at_providers": duplicates_at_providers(simulators.values()),
    }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
