"""Claiming messages before sending them, so a duplicate task never sends twice.

The broker message is only a wake-up call: it may be lost or delivered twice,
and two workers may hold the same ids. A worker sends only what it claimed
with one atomic ``UPDATE ... WHERE status = 'queued' ... RETURNING``; on
PostgreSQL a concurrent claimer blocks on the row lock, re-reads the row, finds
it ``sending`` and skips it. Claiming counts the attempt and takes a lease: a
row still ``sending`` after its lease belongs to a worker that died, and the
sweeper resolves it.

Besides its status a claimable row must be due (``send_at`` and ``retry_at``
passed: a scheduled message is never sent early, a backoff is honoured), not
expired, and not in a paused or cancelled campaign.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from models.ledger import move_where, status_among
from models.status import CampaignStatus, EventSource, MessageStatus
from models.tables import Campaign, Message

S = MessageStatus

WAITING_FOR_TOKENS = "released unsent: waiting for throttle tokens"  # release's event detail


@dataclass(frozen=True, slots=True)
class Claimed:
    """What the worker needs of a claimed message to send it."""

    id: str
    to: str
    text: str
    sender: str | None
    kind: str
    provider: str
    segments: int
    attempts: int
    parts_sent: int
    stop_list: bool
    flash: bool
    expires_at: dt.datetime | None
    campaign_id: str | None
    route: str | None = None
    """The route whose accounts may carry it (``worker.routing``); None: ``provider`` only."""


_CLAIMED_COLUMNS = (
    Message.id,
    Message.to,
    Message.text,
    Message.sender,
    Message.kind,
    Message.provider,
    Message.segments,
    Message.attempts,
    Message.parts_sent,
    Message.stop_list,
    Message.flash,
    Message.expires_at,
    Message.campaign_id,
    Message.route,
)


def _due(now: dt.datetime) -> list[ColumnElement[bool]]:
    return [
        or_(Message.send_at.is_(None), Message.send_at <= now),
        or_(Message.retry_at.is_(None), Message.retry_at <= now),
        or_(Message.expires_at.is_(None), Message.expires_at > now),
        or_(
            Message.campaign_id.is_(None),
            Message.campaign_id.in_(
                select(Campaign.id).where(Campaign.status == CampaignStatus.RUNNING)
            ),
        ),
    ]


def claim(
    session: Session,
    ids: Sequence[str],
    *,
    now: dt.datetime,
    lease: float,
    token: str,
    resend_unknown: bool = False,
    hold_providers: Collection[str] = (),
    routes: Collection[str] = (),
    hold_routes: Collection[str] = (),
) -> list[Claimed]:
    """Move the claimable ones of ``ids`` to ``sending``; return them.

    Rows of the accounts in ``hold_providers`` (an open circuit breaker) are
    not claimed: they stay as they are, without an event or an attempt. A
    row on one of ``routes`` (the routes the worker chooses an account for)
    is held instead when its route is in ``hold_routes`` (every account
    down), whatever its ``provider``.

    ``token`` marks the rows as this claim's: a worker that wakes up after the
    sweeper took its rows cannot renew or write them as its own.
    ``resend_unknown`` claims ``unknown`` rows instead (the one resend with the
    same transactionId), each at most once. The caller commits.
    """
    if not ids:
        return []
    values: dict[str, object] = {
        "attempts": Message.attempts + 1,
        "lease_until": now + dt.timedelta(seconds=lease),
        "lease_token": token,
    }
    if resend_unknown:
        source = S.UNKNOWN
        where: list[ColumnElement[bool]] = [
            Message.unknown_resends == 0,
            or_(Message.expires_at.is_(None), Message.expires_at > now),
            # A campaign counts as finished while some of its outcomes are
            # still unknown; only an operator's pause or cancel stops the resend.
            or_(
                Message.campaign_id.is_(None),
                Message.campaign_id.in_(
                    select(Campaign.id).where(
                        Campaign.status.not_in([CampaignStatus.PAUSED, CampaignStatus.CANCELLED])
                    )
                ),
            ),
        ]
        values["unknown_resends"] = Message.unknown_resends + 1
    else:
        source = S.QUEUED
        where = _due(now)
    held = _held(hold_providers, routes, hold_routes)
    if held is not None:
        where.append(~held)
    rows = move_where(
        session,
        S.SENDING,
        where=[Message.id.in_(list(ids)), *where],
        from_statuses=[source],
        values=values,
        returning=_CLAIMED_COLUMNS[1:],
        source=EventSource.WORKER,
        now=now,
        by_ids=True,
    )
    return [Claimed(*row) for row in rows]


def _held(
    providers: Collection[str], routes: Collection[str], hold_routes: Collection[str]
) -> ColumnElement[bool] | None:
    """The rows a claim holding ``providers`` and ``hold_routes`` leaves alone; None: none."""
    by_provider: ColumnElement[bool] | None = (
        Message.provider.in_(list(providers)) if providers else None
    )
    if not routes:
        return by_provider
    if by_provider is not None:
        # A row whose route this worker does not know goes by its provider.
        by_provider = and_(
            or_(Message.route.is_(None), Message.route.not_in(list(routes))), by_provider
        )
    by_route = (
        and_(Message.route.is_not(None), Message.route.in_(list(hold_routes)))
        if hold_routes
        else None
    )
    if by_provider is None or by_route is None:
        return by_provider if by_route is None else by_route
    return or_(by_route, by_provider)


def held_back(
    session: Session,
    ids: Sequence[str],
    providers: Collection[str],
    *,
    routes: Collection[str] = (),
    hold_routes: Collection[str] = (),
) -> list[tuple[str, str, str]]:
    """``(id, kind, provider)`` of the queued rows among ``ids`` that a claim with the
    same holds (:func:`claim`) left for a later wake-up."""
    held = _held(providers, routes, hold_routes) if ids else None
    if held is None:
        return []
    query = select(Message.id, Message.kind, Message.provider).where(
        Message.id.in_(list(ids)),
        status_among([S.QUEUED], by_ids=True),
        held,
    )
    return [(id_, kind, provider) for id_, kind, provider in session.execute(query)]


def expire_overdue(session: Session, ids: Sequence[str], *, now: dt.datetime) -> list[str]:
    """Queued messages among ``ids`` whose validity has passed become ``expired``."""
    if not ids:
        return []
    rows = move_where(
        session,
        S.EXPIRED,
        where=[
            Message.id.in_(list(ids)),
            and_(Message.expires_at.is_not(None), Message.expires_at <= now),
        ],
        from_statuses=[S.QUEUED, S.SCHEDULED],
        values={"lease_until": None},
        source=EventSource.WORKER,
        now=now,
        detail="validity passed before it could be sent",
        by_ids=True,
    )
    return [row[0] for row in rows]


def release(
    session: Session,
    ids: Sequence[str],
    *,
    now: dt.datetime,
    retry_at: dt.datetime,
    token: str,
    detail: str = WAITING_FOR_TOKENS,
) -> list[str]:
    """Give claimed rows back unsent (the bucket had no tokens for them soon
    enough, the provider is paused, its circuit breaker is open):
    ``sending -> queued``. Not an attempt."""
    if not ids:
        return []
    rows = move_where(
        session,
        S.QUEUED,
        where=[Message.id.in_(list(ids)), Message.lease_token == token],
        from_statuses=[S.SENDING],
        values={
            "attempts": Message.attempts - 1,
            "lease_until": None,
            "lease_token": None,
            "retry_at": retry_at,
        },
        source=EventSource.WORKER,
        now=now,
        detail=detail,
    )
    return [row[0] for row in rows]


def renew_lease(
    session: Session, ids: Sequence[str], *, now: dt.datetime, lease: float, token: str
) -> set[str]:
    """Extend the lease of rows still ``sending``; return the ids still owned.

    A row missing from the answer was taken by the sweeper (our lease ran
    out) or moved on by a delivery report: it must not be sent by us now.
    The caller commits.
    """
    if not ids:
        return set()
    return set(
        session.scalars(
            update(Message)
            .where(
                Message.id.in_(list(ids)),
                Message.status == S.SENDING,
                Message.lease_token == token,
            )
            .values(lease_until=now + dt.timedelta(seconds=lease))
            .returning(Message.id)
        )
    )
