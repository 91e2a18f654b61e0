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
from smsq.settings import Settings

S = MessageStatus

DEFAULT_SCHEDULE_HORIZON: float = Settings.model_fields["schedule_horizon"].default


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
    def send_at(self) -> dt.datetime | None: ...
    @property
    def created_at(self) -> dt.datetime: ...


def implied_first_event(
    message: IngestedMessage,
    first_recorded: tuple[str, str] | None,
    *,
    schedule_horizon: float = DEFAULT_SCHEDULE_HORIZON,
) -> ImpliedEvent | None:
    """The first entry of a campaign message's history, which is not stored.

    Ingestion writes no event for a campaign message's first status (one
    event per row was ~40 % of a million-row upload's database work). Every
    later change has its event, so the first status follows from the row and
    from ``first_recorded``, the (status, source) of the message's earliest
    stored event (None: it has none):

    - no stored event: the message is still in its first status;
    - the earliest is the worker's ``queued``: the campaign was scheduled and
      started (a retry's ``queued`` only ever follows ``sending``);
    - the earliest is ``sending`` (or a report): it was ``queued``;
    - the earliest is ``cancelled`` or ``expired`` before any send: it was
      ``scheduled`` when its ``send_at`` lay beyond the scheduling horizon at
      ingestion, else ``queued``;
    - the earliest is the producer's: written before this rule (or a single
      message): nothing is implied.

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
        started = first_status == S.QUEUED and first_source == EventSource.WORKER
        ended_waiting = first_status in (S.CANCELLED, S.EXPIRED) and _was_scheduled(
            message, schedule_horizon
        )
        status = S.SCHEDULED.value if started or ended_waiting else S.QUEUED.value
    detail = SUPPRESSED_DETAIL if status == S.SUPPRESSED else None
    return ImpliedEvent(status, EventSource.PRODUCER.value, True, None, detail, message.created_at)


def _was_scheduled(message: IngestedMessage, horizon: float) -> bool:
    send_at = message.send_at
    return send_at is not None and (send_at - message.created_at).total_seconds() > horizon
