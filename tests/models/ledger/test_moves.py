"""insert_new_messages: the set-based first status of new rows, with their events."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.ids import new_id
from models.ledger import insert_new_messages
from models.status import EventSource
from models.status import MessageStatus as S
from models.tables import Message, MessageEvent

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def values(status: S) -> dict[str, Any]:
    return {
        "id": new_id(),
        "to": "+4915123000001",
        "text": "Hi",
        "kind": "transactional",
        "provider": "panel",
        "status": status.value,
        "encoding": "gsm7",
        "segments": 1,
        "client_id": "",
        "created_at": NOW,
        "updated_at": NOW,
    }


def test_new_rows_start_at_their_status_with_one_event_each(session: Session) -> None:
    rows = [values(S.QUEUED), values(S.SUPPRESSED)]
    insert_new_messages(
        session, rows, source=EventSource.PRODUCER, now=NOW, details={S.SUPPRESSED: "listed"}
    )
    session.commit()
    stored = {m.id: m for m in session.scalars(select(Message))}
    assert stored[rows[0]["id"]].status == "queued" and stored[rows[0]["id"]].finished_at is None
    assert stored[rows[1]["id"]].finished_at == NOW  # a final status
    events = {e.message_id: e for e in session.scalars(select(MessageEvent))}
    assert (events[rows[1]["id"]].status, events[rows[1]["id"]].detail) == ("suppressed", "listed")
    assert events[rows[0]["id"]].source == "producer" and events[rows[0]["id"]].applied


def test_a_status_a_new_message_cannot_have_is_refused(session: Session) -> None:
    with pytest.raises(ValueError, match="cannot start as delivered"):
        insert_new_messages(session, [values(S.DELIVERED)], source=EventSource.PRODUCER, now=NOW)
