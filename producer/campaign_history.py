"""A campaign message's history: its first status, which is not stored.

Ingestion (:mod:`producer.campaign_ingestion`) writes no event row for a
campaign message's first status: an event per message was ~40 % of the
database's work in a million-row upload. Every reader of a message's history
puts :func:`implied_first_event` before the stored events.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple, Protocol

from models.status import EventSource, MessageStatus
from producer.stoplist import SUPPRESSED_DETAIL

S = MessageStatus


class ImpliedEvent(NamedTuple):
    """A history entry that is not stored; the fields of a ``message_events`` row."""

    status: str
    source: str
    applied: bool
    provider_code: int | None
    detail: str | None
    created_at: dt.datetime


class IngestedMessage(Protocol):
    """What :func:`implied_first_event` reads of a message (ORM row or a Row)."""

    @property
    def campaign_id(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def was_scheduled(self) -> bool: ...
    @property
    def created_at(self) -> dt.datetime: ...


def implied_first_event(
    message: IngestedMessage, first_recorded: tuple[str, str] | None
) -> ImpliedEvent | None:
    """The first entry of a campaign message's history, which is not stored.

    Ingestion writes no event for a campaign message's first status (one
    event per row was ~40 % of a million-row upload's database work). Every
    later change has its event, so the first status follows from the row and
    from ``first_recorded``, the (status, source) of the message's earliest
    stored event (None: it has none):

    - no stored event: the message is still in its first status;
    - the earliest is the producer's: written before this rule (or a single
      message): nothing is implied;
    - any other: it was ``scheduled`` when ingestion decided so (the row's
      ``was_scheduled``: its ``send_at`` lay beyond the scheduling horizon
      configured then), else ``queued``.

    Readers of a history prepend the result (when not None) to the stored
    events; its time is the message's ``created_at``, its source the producer.
    """
    if message.campaign_id is None:
        return None
    if first_recorded is None:
        status = message.status
    else:
        first_status, first_source = first_recorded
        if first_source == EventSource.PRODUCER:
            return None
        # The worker's 'queued' first is a scheduled campaign's start (a
        # retry's 'queued' only ever follows 'sending'): it says so even for
        # a row stored before was_scheduled was (backfilled with a guess).
        started = first_status == S.QUEUED and first_source == EventSource.WORKER
        status = S.SCHEDULED.value if started or message.was_scheduled else S.QUEUED.value
    detail = SUPPRESSED_DETAIL if status == S.SUPPRESSED else None
    return ImpliedEvent(status, EventSource.PRODUCER.value, True, None, detail, message.created_at)
