"""Statuses of messages and campaigns, and the one table of allowed moves.

Every status change in smsq goes through :func:`can_move` (for one row) or
:func:`sources_of` (for a bulk ``UPDATE ... WHERE status IN (...)``), so the
state machine lives here and nowhere else.

A message's life::

    accepted ─► scheduled ─► queued ─► sending ─► sent ─► delivered
        │            │          │         │  ▲       │    undelivered
        │            │          │         │  └queued │    failed / expired
        ▼            ▼          ▼         ▼          ▼
    suppressed   cancelled  cancelled   failed    unknown ─► (resolved by a
    rejected     expired    expired     unknown              report or a resend)

Final states (``delivered``, ``undelivered``, ``failed``, ``expired``,
``suppressed``, ``rejected``, ``cancelled``) never move again: a late report
is kept as an event and leaves the status alone.
"""

from __future__ import annotations

from enum import StrEnum


class MessageStatus(StrEnum):
    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    EXPIRED = "expired"
    UNKNOWN = "unknown"
    SUPPRESSED = "suppressed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class MessageKind(StrEnum):
    OTP = "otp"
    TRANSACTIONAL = "transactional"
    CAMPAIGN = "campaign"


class EventSource(StrEnum):
    """Who caused a status change; kept on every event."""

    PRODUCER = "producer"
    WORKER = "worker"
    DLR = "dlr"
    SWEEPER = "sweeper"
    OPERATOR = "operator"


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    FINISHED = "finished"


S = MessageStatus

FINAL_STATUSES: frozenset[MessageStatus] = frozenset(
    {S.DELIVERED, S.UNDELIVERED, S.FAILED, S.EXPIRED, S.SUPPRESSED, S.REJECTED, S.CANCELLED}
)

# Where a message may go from each non-final state. ``sending -> delivered``
# is allowed because a fast delivery report can overtake the worker's own
# write of ``sent``; ``sending -> queued`` is a retry (codes 6/7, lost lease);
# ``unknown -> sending`` is the one resend with the same transactionId.
_MESSAGE_MOVES: dict[MessageStatus, frozenset[MessageStatus]] = {
    S.ACCEPTED: frozenset({S.SCHEDULED, S.QUEUED, S.SUPPRESSED, S.REJECTED, S.CANCELLED}),
    S.SCHEDULED: frozenset({S.QUEUED, S.CANCELLED, S.EXPIRED}),
    S.QUEUED: frozenset({S.SENDING, S.CANCELLED, S.EXPIRED, S.SCHEDULED}),
    S.SENDING: frozenset(
        {S.SENT, S.QUEUED, S.FAILED, S.UNKNOWN, S.EXPIRED, S.DELIVERED, S.UNDELIVERED}
    ),
    S.SENT: frozenset({S.DELIVERED, S.UNDELIVERED, S.FAILED, S.EXPIRED, S.UNKNOWN}),
    S.UNKNOWN: frozenset({S.SENDING, S.SENT, S.DELIVERED, S.UNDELIVERED, S.FAILED, S.EXPIRED}),
}

_CAMPAIGN_MOVES: dict[CampaignStatus, frozenset[CampaignStatus]] = {
    CampaignStatus.DRAFT: frozenset(
        {CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.CANCELLED}
    ),
    CampaignStatus.SCHEDULED: frozenset({CampaignStatus.RUNNING, CampaignStatus.CANCELLED}),
    CampaignStatus.RUNNING: frozenset(
        {CampaignStatus.PAUSED, CampaignStatus.CANCELLED, CampaignStatus.FINISHED}
    ),
    CampaignStatus.PAUSED: frozenset({CampaignStatus.RUNNING, CampaignStatus.CANCELLED}),
    # Only an operator's re-queue (smsq fleet retry) reopens a finished
    # campaign: its claim takes messages of running campaigns only.
    CampaignStatus.FINISHED: frozenset({CampaignStatus.RUNNING}),
}

# An operator's re-queue (`smsq fleet retry`, e.g. code 9 after a credit
# top-up) is the one way out of these final states. It is not a move of the
# table above on purpose: no worker result or delivery report may use it (a
# late worker write guarded by ``sources_of(QUEUED)`` must never revive a row).
OPERATOR_REQUEUE_FROM: frozenset[MessageStatus] = frozenset(
    {MessageStatus.FAILED, MessageStatus.EXPIRED, MessageStatus.UNDELIVERED}
)


def is_final(status: MessageStatus) -> bool:
    return status in FINAL_STATUSES


def can_move(current: MessageStatus, to: MessageStatus) -> bool:
    """True when a message in ``current`` may change to ``to``."""
    return to in _MESSAGE_MOVES.get(current, frozenset())


def sources_of(to: MessageStatus) -> frozenset[MessageStatus]:
    """Every status from which a message may move to ``to`` (for bulk updates)."""
    return frozenset(src for src, dests in _MESSAGE_MOVES.items() if to in dests)


def campaign_can_move(current: CampaignStatus, to: CampaignStatus) -> bool:
    return to in _CAMPAIGN_MOVES.get(current, frozenset())
