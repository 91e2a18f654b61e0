"""Read views of campaigns and messages, for the HTTP API and the command line.

Plain functions on a Session returning frozen records, so both interfaces
show the same numbers. None of them ever returns a message's text: it may be
a one-time code, and these views end up in API answers, terminals and logs.

The campaign summary's send rate is what was actually sent in the last
minute (messages with ``sent_at`` in ``(now - 60 s, now]``), not the
provider's configured rate: a throttled or paused campaign shows its real
pace. The estimated finish is ``now + to_send / rate``; it is None when the
campaign is not ``running``, when nothing remains, or when nothing was sent in
the last minute (no pace to extrapolate from).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from models.queries import campaign_counts
from models.status import CampaignStatus, MessageStatus
from models.tables import Campaign, Message, MessageEvent
from producer.campaign_history import implied_first_event

S = MessageStatus

RATE_WINDOW = dt.timedelta(seconds=60)  # the send rate is measured over this
# Statuses still on their way to the provider: what "to send" counts.
TO_SEND_STATUSES: frozenset[MessageStatus] = frozenset(
    {S.ACCEPTED, S.SCHEDULED, S.QUEUED, S.SENDING}
)
REPORT_BATCH = 1000  # rows fetched per round trip while streaming a report
REPORT_COLUMNS = (
    "to",
    "message_id",
    "status",
    "error_code",
    "error_detail",
    "sent_at",
    "finished_at",
    "provider",  # the account of its last attempt
    "route",  # the route it goes by (docs/routing.md); empty: none
)


@dataclass(frozen=True, slots=True)
class CampaignSummary:
    """A campaign's progress at ``now``; see the module docstring for the math."""

    id: str
    name: str
    status: str
    provider: str
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    send_at: dt.datetime | None
    accepted: int  # rows that became messages
    rejected: int  # rows refused at ingestion
    counts: dict[str, int]  # messages per status (only statuses that occur)
    sent_last_minute: int
    rate_per_second: float
    estimated_finish: dt.datetime | None
    to_send: int  # messages not yet handed to the provider


@dataclass(frozen=True, slots=True)
class CampaignListed:
    """One line of the campaign list: enough to pick the id of the one wanted."""

    id: str
    name: str
    status: str
    provider: str
    created_at: dt.datetime
    accepted: int
    rejected: int


class EventView(NamedTuple):
    """One entry of a message's history (``message_events``)."""

    status: str
    source: str
    applied: bool  # False: recorded, but the status did not change (a late report)
    provider_code: int | None
    detail: str | None
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class MessageView:
    """One message as its sender may see it: everything but the text."""

    id: str
    to: str
    kind: str
    campaign_id: str | None
    status: str
    provider: str
    provider_message_id: str | None
    error_code: int | None
    error_detail: str | None
    attempts: int
    route: str | None
    encoding: str
    segments: int
    send_at: dt.datetime | None
    expires_at: dt.datetime | None
    created_at: dt.datetime
    sent_at: dt.datetime | None
    finished_at: dt.datetime | None
    events: list[EventView]


class ReportRow(NamedTuple):
    """One recipient of a campaign report, in :data:`REPORT_COLUMNS` order."""

    to: str
    message_id: str
    status: str
    error_code: int | None
    error_detail: str | None
    sent_at: dt.datetime | None
    finished_at: dt.datetime | None
    provider: str
    route: str | None


def campaign_summary(
    session: Session, campaign_id: str, *, now: dt.datetime
) -> CampaignSummary | None:
    """The campaign's counts, pace and estimated finish; None if there is none."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        return None
    counts = campaign_counts(session, campaign_id)
    since = now - RATE_WINDOW
    sent_last_minute = (
        session.scalar(
            select(func.count()).where(
                Message.campaign_id == campaign_id,
                Message.sent_at > since,
                Message.sent_at <= now,
            )
        )
        or 0
    )
    rate = sent_last_minute / RATE_WINDOW.total_seconds()
    to_send = sum(n for status, n in counts.items() if status in TO_SEND_STATUSES)
    return CampaignSummary(
        id=campaign.id,
        name=campaign.name,
        status=campaign.status,
        provider=campaign.provider,
        created_at=campaign.created_at,
        started_at=campaign.started_at,
        finished_at=campaign.finished_at,
        send_at=campaign.send_at,
        accepted=campaign.accepted,
        rejected=campaign.rejected,
        counts=dict(sorted(counts.items())),
        sent_last_minute=sent_last_minute,
        rate_per_second=rate,
        estimated_finish=estimated_finish(campaign.status, to_send, rate, now=now),
        to_send=to_send,
    )


def list_campaigns(
    session: Session, *, limit: int = 20, status: str | None = None
) -> list[CampaignListed]:
    """The newest campaigns first (ids are UUIDv7: time-ordered), optionally of one status."""
    query = select(
        Campaign.id,
        Campaign.name,
        Campaign.status,
        Campaign.provider,
        Campaign.created_at,
        Campaign.accepted,
        Campaign.rejected,
    ).order_by(Campaign.created_at.desc(), Campaign.id.desc())
    if status is not None:
        query = query.where(Campaign.status == status)
    return [CampaignListed(*row) for row in session.execute(query.limit(limit))]


def estimated_finish(
    status: str, to_send: int, rate_per_second: float, *, now: dt.datetime
) -> dt.datetime | None:
    """``now + to_send / rate`` for a running campaign with a pace; else None."""
    if status != CampaignStatus.RUNNING or to_send <= 0 or rate_per_second <= 0:
        return None
    return now + dt.timedelta(seconds=to_send / rate_per_second)


def message_view(
    session: Session, message_id: str, *, client_id: str | None = None
) -> MessageView | None:
    """A message with its events; None if there is none.

    With ``client_id``, a message of another client is None too, so an API
    client cannot tell someone else's id from one that does not exist.
    Campaign messages belong to no client and are visible to every client,
    like the campaigns themselves (one organisation per deployment).
    """
    query = select(Message).where(Message.id == message_id)
    if client_id is not None:
        query = query.where(or_(Message.client_id == client_id, Message.campaign_id.is_not(None)))
    message = session.scalars(query).first()
    if message is None:
        return None
    events = [
        EventView(*row)
        for row in session.execute(
            select(
                MessageEvent.status,
                MessageEvent.source,
                MessageEvent.applied,
                MessageEvent.provider_code,
                MessageEvent.detail,
                MessageEvent.created_at,
            )
            .where(MessageEvent.message_id == message_id)
            .order_by(MessageEvent.id)
        )
    ]
    # A campaign message's first status has no stored event (ingestion speed):
    # it is implied by the row; see producer.campaign_history.implied_first_event.
    first = implied_first_event(message, (events[0].status, events[0].source) if events else None)
    if first is not None:
        events.insert(0, EventView(*first))
    return MessageView(
        id=message.id,
        to=message.to,
        kind=message.kind,
        campaign_id=message.campaign_id,
        status=message.status,
        provider=message.provider,
        provider_message_id=message.provider_message_id,
        error_code=message.error_code,
        error_detail=message.error_detail,
        attempts=message.attempts,
        route=message.route,
        encoding=message.encoding,
        segments=message.segments,
        send_at=message.send_at,
        expires_at=message.expires_at,
        created_at=message.created_at,
        sent_at=message.sent_at,
        finished_at=message.finished_at,
        events=events,
    )


def report_rows(session: Session, campaign_id: str) -> Iterator[ReportRow]:
    """Every recipient of the campaign in message-id order, streamed.

    Rows come :data:`REPORT_BATCH` at a time (a server-side cursor on
    PostgreSQL), so a million-recipient report is never held in memory. The
    session stays busy until the iterator is exhausted or closed.
    """
    query = (
        select(
            Message.to,
            Message.id,
            Message.status,
            Message.error_code,
            Message.error_detail,
            Message.sent_at,
            Message.finished_at,
            Message.provider,
            Message.route,
        )
        .where(Message.campaign_id == campaign_id)
        .order_by(Message.id)
        .execution_options(yield_per=REPORT_BATCH)
    )
    for row in session.execute(query):
        yield ReportRow(*row)
