"""The schema on both databases (SQLite always; PostgreSQL as integration)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.ledger import apply_status
from models.queries import campaign_counts
from models.status import EventSource, MessageStatus
from models.tables import Campaign, Message, MessageEvent, Suppression

S = MessageStatus


def test_message_defaults_and_time_round_trip(
    session: Session, make_message: Callable[..., Message]
) -> None:
    send_at = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    message = make_message(send_at=send_at)
    session.expire_all()
    row = session.get(Message, message.id)
    assert row is not None
    assert row.status == S.ACCEPTED
    assert row.attempts == 0
    assert row.send_at == send_at  # same instant
    assert row.send_at is not None and row.send_at.tzinfo == dt.UTC
    assert len(row.id) == 36 and row.id[14] == "7"  # a UUIDv7


def test_naive_datetimes_are_refused(make_message: Callable[..., Message]) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        make_message(send_at=dt.datetime(2030, 1, 1))


def test_idempotency_key_is_unique_per_client(
    session: Session, make_message: Callable[..., Message]
) -> None:
    make_message(client_id="shop", idempotency_key="order-1")
    make_message(client_id="blog", idempotency_key="order-1")  # another client: fine
    make_message(client_id="shop", idempotency_key=None)
    make_message(client_id="shop", idempotency_key=None)  # no key: no constraint
    with pytest.raises(IntegrityError):
        make_message(client_id="shop", idempotency_key="order-1")
    session.rollback()


def test_a_number_is_in_a_campaign_once(
    session: Session,
    make_message: Callable[..., Message],
    make_campaign: Callable[..., Campaign],
) -> None:
    campaign = make_campaign()
    make_message(campaign_id=campaign.id, to="+4915550000001")
    make_message(to="+4915550000001")  # outside the campaign: fine
    with pytest.raises(IntegrityError):
        make_message(campaign_id=campaign.id, to="+4915550000001")
    session.rollback()


def test_status_changes_are_recorded_and_final_states_stick(
    session: Session, make_message: Callable[..., Message]
) -> None:
    message = make_message()
    for to in (S.QUEUED, S.SENDING, S.SENT, S.DELIVERED):
        assert apply_status(session, message, to, source=EventSource.WORKER)
    # A late 'sent' report after 'delivered': kept as an event, status unchanged.
    assert not apply_status(session, message, S.SENT, source=EventSource.DLR, detail="late")
    session.commit()
    session.expire_all()

    row = session.get(Message, message.id)
    assert row is not None
    assert row.status == S.DELIVERED
    assert row.sent_at is not None and row.finished_at is not None
    events = session.scalars(
        select(MessageEvent).where(MessageEvent.message_id == message.id).order_by(MessageEvent.id)
    ).all()
    assert [(e.status, e.applied) for e in events] == [
        ("queued", True),
        ("sending", True),
        ("sent", True),
        ("delivered", True),
        ("sent", False),
    ]
    assert events[-1].source == EventSource.DLR


def test_campaign_counts_are_one_query(
    session: Session,
    make_message: Callable[..., Message],
    make_campaign: Callable[..., Campaign],
) -> None:
    campaign = make_campaign()
    for status in (S.DELIVERED, S.DELIVERED, S.FAILED, S.QUEUED):
        make_message(campaign_id=campaign.id, status=status)
    make_message(status=S.FAILED)  # another campaign's row is not counted
    assert campaign_counts(session, campaign.id) == {"delivered": 2, "failed": 1, "queued": 1}


def test_event_payload_json_round_trip(
    session: Session, make_message: Callable[..., Message]
) -> None:
    message = make_message()
    payload = {"statusID": "1", "smsID": "abc", "nested": {"n": 1}}
    apply_status(session, message, S.QUEUED, source=EventSource.PRODUCER, payload=payload)
    session.commit()
    session.expire_all()
    event = session.scalars(select(MessageEvent)).one()
    assert event.payload == payload


def test_suppression_list(session: Session) -> None:
    session.add(Suppression(number="+4915550000009", reason="STOP reply"))
    session.commit()
    row = session.get(Suppression, "+4915550000009")
    assert row is not None and row.reason == "STOP reply"
