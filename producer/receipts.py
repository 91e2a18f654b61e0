"""What the producer answers: plain frozen records, easy to turn into JSON."""

from __future__ import annotations

from dataclasses import dataclass

MAX_ERRORS = 100  # rejected rows reported (campaigns, stop-list imports); all are counted
VALUE_SHOWN = 100  # characters of a rejected value kept in the report


@dataclass(frozen=True, slots=True)
class MessageReceipt:
    """One accepted message: its id (also the provider transactionId) and state.

    ``status`` is ``queued``, ``scheduled`` or ``suppressed`` for a new message;
    for a repeated idempotency key it is the existing message's current status.
    """

    id: str
    status: str
    encoding: str  # gsm7 | ucs2
    segments: int  # parts the provider charges for


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A recipient row that was not accepted; ``row`` is its 1-based position."""

    row: int
    value: str  # the phone value as given
    reason: str


@dataclass(frozen=True, slots=True)
class CampaignReceipt:
    """The outcome of ingesting a campaign.

    Every row read is either ``accepted`` (it has a message row, whatever its
    fate) or ``rejected`` (no row; the reason is in ``errors`` for the first
    :data:`MAX_ERRORS`). ``suppressed`` counts the accepted
    rows whose number is on the stop list: recorded, never sent.
    """

    campaign_id: str
    accepted: int
    rejected: int
    errors: list[RejectedRow]
    suppressed: int
    status: str  # the campaign's status when ingestion ended
