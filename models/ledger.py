"""The ledger: every write of a message status — the move, its columns, its event.

The rule of which moves are allowed is in ``models.status``; this module is
the one writer of single-row changes (the worker's bulk writes use
``models.status.sources_of`` in their ``WHERE``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from models.status import EventSource, MessageStatus, can_move, is_final, sources_of
from models.tables import Message, MessageEvent, utcnow


def apply_status(
    session: Session,
    message: Message,
    to: MessageStatus,
    *,
    source: EventSource,
    provider_code: int | None = None,
    detail: str | None = None,
    payload: dict[str, Any] | None = None,
    at: dt.datetime | None = None,
) -> bool:
    """Move ``message`` to ``to`` if allowed; always record the event.

    Returns True when the status changed. A move that is not allowed (a late
    ``sent`` after ``delivered``, a duplicate report) is kept as an event with
    ``applied=False`` and leaves the row alone. The caller commits.
    """
    now = at or utcnow()
    moved = moved_columns(MessageStatus(message.status), to, sent_at=message.sent_at, now=now)
    session.add(
        MessageEvent(
            message_id=message.id,
            status=to,
            source=source,
            applied=moved is not None,
            provider_code=provider_code,
            detail=detail,
            payload=payload,
            created_at=now,
        )
    )
    if moved is None:
        return False
    for column, value in moved.items():
        setattr(message, column, value)
    return True


def moved_columns(
    current: MessageStatus, to: MessageStatus, *, sent_at: dt.datetime | None, now: dt.datetime
) -> dict[str, Any] | None:
    """The columns a move from ``current`` to ``to`` sets; None if it is not allowed.

    The one rule of what a status change writes, for the single-row writer
    above and for set-based writers (delivery reports in bulk).
    """
    if not can_move(current, to):
        return None
    values: dict[str, Any] = {"status": to, "updated_at": now}
    if to is MessageStatus.SENT and sent_at is None:
        values["sent_at"] = now
    if is_final(to):
        values["finished_at"] = now
    return values


def insert_new_messages(
    session: Session,
    rows: list[dict[str, Any]],
    *,
    source: EventSource,
    now: dt.datetime,
    details: Mapping[MessageStatus, str] | None = None,
) -> None:
    """Insert new messages, each already at its first ``status``, with its event.

    The set-based twin of ``Message(status=accepted)`` + :func:`apply_status`
    for many rows at once (two INSERT statements, no ORM objects): each row's
    status must be one an ``accepted`` message may move to. ``rows`` are
    ``messages`` column values; ``details`` gives an event detail by status.
    The caller commits.
    """
    events = []
    for row in rows:
        to = MessageStatus(row["status"])
        if not can_move(MessageStatus.ACCEPTED, to):
            raise ValueError(f"a new message cannot start as {to}")
        row["finished_at"] = now if is_final(to) else None
        events.append(
            {
                "message_id": row["id"],
                "status": to,
                "source": source,
                "applied": True,
                "detail": (details or {}).get(to),
                "created_at": now,
            }
        )
    if rows:
        session.execute(insert(Message), rows)
        session.execute(insert(MessageEvent), events)


def move_campaign_messages(
    session: Session,
    campaign_id: str,
    *,
    from_statuses: Iterable[MessageStatus],
    to: MessageStatus,
    source: EventSource,
    now: dt.datetime,
) -> int:
    """Move every message of a campaign in ``from_statuses`` to ``to``, with an
    event each, in two set-based statements (a campaign may have millions of
    rows). Only moves the state machine allows are made. The caller commits.
    """
    sources = sorted(set(from_statuses) & sources_of(to))
    values: dict[str, Any] = {"status": to, "updated_at": now}
    if is_final(to):
        values["finished_at"] = now
    # Update first and write events for exactly the rows moved: a row claimed
    # by a worker between two statements must not get an event it never had.
    moved = list(
        session.scalars(
            update(Message)
            .where(Message.campaign_id == campaign_id, Message.status.in_(sources))
            .values(values)
            .returning(Message.id)
        )
    )
    for start in range(0, len(moved), 10_000):
        session.execute(
            insert(MessageEvent),
            [
                {
                    "message_id": mid,
                    "status": to,
                    "source": source,
                    "applied": True,
                    "created_at": now,
                }
                for mid in moved[start : start + 10_000]
            ],
        )
    return len(moved)
