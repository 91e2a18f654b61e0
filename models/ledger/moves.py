"""Status moves of messages: what a move sets, and every statement that writes one.

The rule of which moves are allowed is :mod:`models.status`; the rule of what
a move writes is :func:`moved_columns` (one row, known status) and
:func:`_set_columns` (many rows in one statement), which say the same thing:
``status`` and ``updated_at`` always, ``sent_at`` on the first ``sent``,
``finished_at`` on a final status. Every writer here records one
``message_events`` row per move, except the first status of a campaign
message, which is implied by the row (an event per recipient was about 40 % of
ingestion's database work; ``producer`` rebuilds it from ``queued_at``).

Callers commit; nothing here does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from models.status import (
    OPERATOR_REQUEUE_FROM,
    EventSource,
    MessageStatus,
    can_move,
    is_final,
    sources_of,
)
from models.tables import Message, MessageEvent, utcnow

S = MessageStatus
MESSAGES: Table = Message.__table__  # type: ignore[assignment]
EVENTS: Table = MessageEvent.__table__  # type: ignore[assignment]

# Event rows per INSERT when a statement moved many rows (a campaign may have millions).
_EVENT_CHUNK = 10_000


# --- the rule of what a move writes -------------------------------------------------


def moved_columns(
    current: MessageStatus, to: MessageStatus, *, sent_at: dt.datetime | None, now: dt.datetime
) -> dict[str, Any] | None:
    """The columns a move from ``current`` to ``to`` sets; None if it is not allowed."""
    if not can_move(current, to):
        return None
    values: dict[str, Any] = {"status": to, "updated_at": now}
    if to is S.SENT and sent_at is None:
        values["sent_at"] = now
    if is_final(to):
        values["finished_at"] = now
    return values


def first_columns(status: MessageStatus, now: dt.datetime) -> dict[str, Any]:
    """The status columns of a new message that starts at ``status`` (``accepted``
    itself, or where an accepted message may go)."""
    if status is not S.ACCEPTED and not can_move(S.ACCEPTED, status):
        raise ValueError(f"a new message cannot start as {status}")
    return {"status": status, "finished_at": now if is_final(status) else None}


def _set_columns(to: MessageStatus, now: dt.datetime) -> dict[str, Any]:
    """:func:`moved_columns` for a statement over many rows of allowed sources."""
    values: dict[str, Any] = {"status": to, "updated_at": now}
    if to is S.SENT:
        values["sent_at"] = func.coalesce(MESSAGES.c.sent_at, literal(now, MESSAGES.c.sent_at.type))
    if is_final(to):
        values["finished_at"] = now
    return values


# --- events -------------------------------------------------------------------------


def _event(
    message_id: str,
    status: MessageStatus,
    *,
    source: EventSource,
    now: dt.datetime,
    applied: bool = True,
    provider_code: int | None = None,
    detail: str | None = None,
    payload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "status": status,
        "source": source,
        "applied": applied,
        "provider_code": provider_code,
        "detail": detail,
        "payload": payload,
        "created_at": now,
    }


def insert_events(session: Session, events: Sequence[Mapping[str, Any]]) -> None:
    """Insert event rows (from :func:`_event`), a chunk per statement."""
    for start in range(0, len(events), _EVENT_CHUNK):
        session.execute(insert(EVENTS), list(events[start : start + _EVENT_CHUNK]))


# --- one row ------------------------------------------------------------------------


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
    ``applied=False`` and leaves the row alone.
    """
    now = at or utcnow()
    session.flush()  # the row exists before the statements below address it
    moved = moved_columns(S(message.status), to, sent_at=message.sent_at, now=now)
    event = _event(
        message.id,
        to,
        source=source,
        now=now,
        applied=moved is not None,
        provider_code=provider_code,
        detail=detail,
        payload=payload,
    )
    session.execute(insert(EVENTS), [event])
    if moved is None:
        return False
    session.execute(update(MESSAGES).where(MESSAGES.c.id == message.id).values(moved))
    for column, value in moved.items():  # shown on the object, no second UPDATE at flush
        set_committed_value(message, column, value)
    return True


# --- new rows -----------------------------------------------------------------------


def insert_new_messages(
    session: Session,
    rows: list[dict[str, Any]],
    *,
    source: EventSource,
    now: dt.datetime,
    details: Mapping[MessageStatus, str] | None = None,
) -> None:
    """Insert new messages, each already at its first ``status``, with its event.

    Two INSERT statements, no ORM objects. ``rows`` are ``messages`` column
    values; ``details`` gives an event detail by status.
    """
    events = []
    for row in rows:
        to = S(row["status"])
        row.update(first_columns(to, now))
        events.append(_event(row["id"], to, source=source, now=now, detail=(details or {}).get(to)))
    if rows:
        session.execute(insert(MESSAGES), rows)
        session.execute(insert(EVENTS), events)


def insert_campaign_rows(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert campaign messages without events (their first status is implied).

    Each row carries its ``status`` and ``finished_at`` from :func:`first_columns`.
    """
    if rows:
        session.execute(insert(MESSAGES), list(rows))


def copy_campaign_rows(session: Session, copy_sql: str, text: str) -> None:
    """The same as :func:`insert_campaign_rows` by PostgreSQL ``COPY ... FROM STDIN``
    (psycopg 3), in the session's transaction: ``text`` is rows in COPY text
    format whose status columns come from :func:`first_columns`."""
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor, cursor.copy(copy_sql) as copy:
        copy.write(text)


def settle_first_status(
    session: Session, message_id: str, to: MessageStatus, *, now: dt.datetime
) -> bool:
    """Move a campaign message held ``accepted`` to its first status, without an
    event (implied, as for every campaign message); only from ``accepted``, so
    an operator's cancel in between wins. True when it moved."""
    moved = session.execute(
        update(MESSAGES)
        .where(MESSAGES.c.id == message_id, MESSAGES.c.status == S.ACCEPTED.value)
        .values({**first_columns(to, now), "updated_at": now})
        .returning(MESSAGES.c.id)
    ).first()
    return moved is not None


# --- every row matching a condition ---------------------------------------------------


def status_among(statuses: Iterable[MessageStatus], *, by_ids: bool = False) -> ColumnElement[bool]:
    """``messages.status`` is one of ``statuses``.

    ``by_ids``: the statement also names its rows by primary key (a batch's
    ids). The status is then compared as ``status || ''`` -- the same value,
    which no index answers -- so PostgreSQL looks the rows up by id whatever
    its statistics say. Statistics taken before a campaign was written (when
    ``queued`` was rare) make a status index look selective for ``queued``:
    each batch's claim then read every queued row, 0.35 s per statement with
    a million queued (``bench/million.py``), a campaign O(N²).
    """
    wanted = sorted(statuses)
    status: ColumnElement[str] = MESSAGES.c.status
    if by_ids:
        status = status.concat("")
    return status == wanted[0] if len(wanted) == 1 else status.in_(wanted)


def move_where(
    session: Session,
    to: MessageStatus,
    *,
    where: Iterable[ColumnElement[bool]],
    source: EventSource,
    now: dt.datetime,
    from_statuses: Iterable[MessageStatus] | None = None,
    values: Mapping[str, Any] | None = None,
    returning: Sequence[Any] = (),
    detail: str | None = None,
    record_events: bool = True,
    by_ids: bool = False,
) -> list[tuple[Any, ...]]:
    """Move every row matching ``where`` (and an allowed source status) to ``to``.

    One UPDATE ... RETURNING, then an event for exactly the rows it moved (a
    row claimed by another worker between two statements gets no event it
    never had). ``values`` are further columns to set (attempts, leases...);
    ``from_statuses`` narrows the sources the state machine allows. Returns
    the moved rows: ``id`` first, then ``returning``. ``record_events=False``
    is only for a campaign message's first status (implied by the row).
    ``by_ids``: ``where`` names the rows by primary key (see :func:`status_among`).
    """
    sources = sources_of(to)
    if from_statuses is not None:
        sources = sources & frozenset(from_statuses)
    if not sources:
        return []
    rows = session.execute(
        update(MESSAGES)
        .where(status_among(sources, by_ids=by_ids), *where)
        .values({**(values or {}), **_set_columns(to, now)})
        .returning(MESSAGES.c.id, *returning)
    ).all()
    if record_events:
        insert_events(
            session, [_event(row[0], to, source=source, now=now, detail=detail) for row in rows]
        )
    return [tuple(row) for row in rows]


def move_campaign_messages(
    session: Session,
    campaign_id: str,
    *,
    from_statuses: Iterable[MessageStatus],
    to: MessageStatus,
    source: EventSource,
    now: dt.datetime,
    detail: str | None = None,
) -> int:
    """Move a campaign's messages in ``from_statuses`` to ``to``; how many moved.
    ``detail`` goes on each move's event (why, for whoever reads the history)."""
    moved = move_where(
        session,
        to,
        where=[MESSAGES.c.campaign_id == campaign_id],
        from_statuses=from_statuses,
        source=source,
        now=now,
        detail=detail,
    )
    return len(moved)


def requeue_by_operator(
    session: Session,
    *,
    where: Iterable[ColumnElement[bool]],
    now: dt.datetime,
    detail: str,
    expires_at: dt.datetime | None = None,
    returning: Sequence[Any] = (),
) -> list[tuple[Any, ...]]:
    """An operator's re-queue of final rows (``smsq fleet retry``): back to ``queued``
    as new, attempts and errors cleared.

    Not a move of the state machine's table on purpose (see
    ``models.status.OPERATOR_REQUEUE_FROM``): only this call may revive a row.
    """
    values: dict[str, Any] = {
        "status": S.QUEUED,
        "attempts": 0,
        "error_code": None,
        "error_detail": None,
        "retry_at": None,
        "finished_at": None,
        "lease_until": None,
        "lease_token": None,
        "updated_at": now,
    }
    if expires_at is not None:
        values["expires_at"] = expires_at
    rows = session.execute(
        update(MESSAGES)
        .where(MESSAGES.c.status.in_(sorted(OPERATOR_REQUEUE_FROM)), *where)
        .values(values)
        .returning(MESSAGES.c.id, *returning)
    ).all()
    events = [
        _event(row[0], S.QUEUED, source=EventSource.OPERATOR, now=now, detail=detail)
        for row in rows
    ]
    insert_events(session, events)
    return [tuple(row) for row in rows]


# --- per-row outcomes of a claim --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RowMove:
    """One row's move with its own columns and event fields."""

    message_id: str
    to: MessageStatus
    values: Mapping[str, Any] = field(default_factory=dict)
    provider_code: int | None = None
    detail: str | None = None


def write_claimed_moves(
    session: Session,
    moves: Sequence[RowMove],
    *,
    now: dt.datetime,
    token: str,
    source: EventSource = EventSource.WORKER,
) -> None:
    """Write what happened to rows a claim (``token``) was sending, with their events.

    One executemany per target status, guarded by ``status IN
    sources_of(to)`` (a delivery report that overtook the worker, ``delivered``
    before our ``sent``, is never overwritten) and by the claim's token (after
    the sweeper took a row, another claim may be sending it right now). The
    lease ends with the move. An event whose row was not moved is kept with
    ``applied = false``.
    """
    if not moves:
        return
    current = {
        mid: (status, lease)
        for mid, status, lease in session.execute(
            select(MESSAGES.c.id, MESSAGES.c.status, MESSAGES.c.lease_token).where(
                MESSAGES.c.id.in_([m.message_id for m in moves])
            )
        )
    }
    by_status: dict[MessageStatus, list[RowMove]] = {}
    for move in moves:
        by_status.setdefault(move.to, []).append(move)
    events = []
    for to, group in by_status.items():
        _write_group(session, to, group, now=now, token=token)
        allowed = sources_of(to)
        for move in group:
            status, lease = current.get(move.message_id, (None, None))
            applied = status in allowed and (status != S.SENDING or lease == token)
            events.append(
                _event(
                    move.message_id,
                    to,
                    source=source,
                    now=now,
                    applied=applied,
                    provider_code=move.provider_code,
                    detail=move.detail,
                )
            )
    session.execute(insert(EVENTS), events)


def assign_accounts(session: Session, accounts: Mapping[str, str], *, token: str) -> None:
    """Name the account each claimed row (id -> account) goes out on, before it is sent.

    A routed message's account is chosen at each attempt (``worker.routing``);
    it is written before the request leaves so that ``provider`` always names
    the account that may have it: an ``unknown`` row is resent, and its
    delivery report matched, on that account only. Rows this claim
    (``token``) no longer holds are left alone. Not a move: no event.

    One statement per account (a route has a few), not one per row: this is
    on the sending path of every routed message whose account changed, and a
    per-row ``executemany`` cost about twice the worker's CPU per row.
    """
    by_account: dict[str, list[str]] = {}
    for message_id, account in accounts.items():
        by_account.setdefault(account, []).append(message_id)
    for account, ids in by_account.items():
        session.connection().execute(
            update(MESSAGES)
            .where(
                MESSAGES.c.id.in_(ids),
                MESSAGES.c.status == S.SENDING.value,
                MESSAGES.c.lease_token == token,
            )
            .values(provider=account)
        )


def _write_group(
    session: Session, to: MessageStatus, moves: Sequence[RowMove], *, now: dt.datetime, token: str
) -> None:
    keys = sorted({k for move in moves for k in move.values})
    params = [
        {"b_id": m.message_id, "b_token": token, **{f"b_{k}": m.values.get(k) for k in keys}}
        for m in moves
    ]
    values: dict[str, Any] = {k: bindparam(f"b_{k}") for k in keys}
    values.update(_set_columns(to, now), lease_until=None, lease_token=None)
    # A row in 'sending' must still be this claim's: after the sweeper took
    # it, another claim may be sending it right now.
    mine = or_(MESSAGES.c.status != S.SENDING.value, MESSAGES.c.lease_token == bindparam("b_token"))
    statement = (
        update(MESSAGES)
        .where(
            MESSAGES.c.id == bindparam("b_id"),
            # No IN (...): an expanding parameter cannot go through executemany.
            or_(*(MESSAGES.c.status == source.value for source in sorted(sources_of(to)))),
            mine,
        )
        .values(values)
    )
    connection = session.connection()
    connection.execute(statement, params)
    if to is S.SENT and "provider_message_id" in keys:
        # A report that overtook us left the row 'delivered': keep its status,
        # but it still gets the provider's id and the time it was sent.
        connection.execute(
            update(MESSAGES)
            .where(MESSAGES.c.id == bindparam("b_id"), mine)
            .values(
                provider_message_id=func.coalesce(
                    MESSAGES.c.provider_message_id, bindparam("b_provider_message_id")
                ),
                sent_at=func.coalesce(MESSAGES.c.sent_at, literal(now, MESSAGES.c.sent_at.type)),
                updated_at=now,
            ),
            params,
        )
