"""The outbox: applied status events of messages with a callback URL become
exactly one delivery each, including events committed late with a lower id."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.tables import ApiKey, DisabledWebhookEndpoint, Message, MessageEvent, WebhookDelivery
from worker.webhooks.outbox import (
    RECOVER_AFTER,
    DeliveryStatus,
    OutboxCursor,
    dispatch,
    first_event_id_since,
)

URL = "https://hooks.example.com/sms"
OTP_TEXT = "Your code is 493817"


def add_event(
    session: Session,
    message: Message,
    status: str,
    *,
    event_id: int | None = None,
    applied: bool = True,
    at: dt.datetime | None = None,
    **fields: Any,
) -> MessageEvent:
    event = MessageEvent(
        message_id=message.id,
        status=status,
        applied=applied,
        created_at=at or dt.datetime.now(dt.UTC),
        **fields,
    )
    if event_id is not None:
        event.id = event_id
    session.add(event)
    session.commit()
    return event


def deliveries(session: Session) -> list[WebhookDelivery]:
    session.expire_all()
    return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.event_id)))


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_each_applied_event_makes_exactly_one_delivery(
    session: Session, make_message: Callable[..., Message]
) -> None:
    msg = make_message(callback_url=URL, text=OTP_TEXT, status="sent", provider_message_id="p-1")
    without = make_message(status="sent")
    first = add_event(session, msg, "queued")
    second = add_event(session, msg, "sent")
    add_event(session, msg, "sent", applied=False)  # a duplicate report: no webhook
    add_event(session, without, "sent")
    cursor = OutboxCursor()

    result = dispatch(session, cursor, now=now())
    again = dispatch(session, cursor, now=now())
    fresh_process = dispatch(session, OutboxCursor(), now=now())

    rows = deliveries(session)
    assert [r.event_id for r in rows] == [first.id, second.id]
    assert sorted(result.created) == sorted(r.id for r in rows)
    assert again.created == [] and fresh_process.created == []
    assert all(r.id.startswith("msg_") and r.status == DeliveryStatus.PENDING for r in rows)
    assert {r.url for r in rows} == {URL}
    body = json.loads(rows[1].payload)
    assert body["type"] == "message.status"
    assert body["data"] | {"at": None} == {
        "id": msg.id,
        "status": "sent",
        "to": msg.to,
        "provider": "panel",
        "route": None,
        "provider_message_id": "p-1",
        "error_code": None,
        "error_detail": None,
        "campaign_id": None,
        "segments": 1,
        "event_id": second.id,
        "at": None,
    }
    assert "493817" not in rows[0].payload + rows[1].payload


def test_failure_details_are_in_the_payload(
    session: Session, make_message: Callable[..., Message]
) -> None:
    msg = make_message(callback_url=URL, status="failed", error_code=12, error_detail="bad number")
    add_event(session, msg, "failed", provider_code=12)
    dispatch(session, OutboxCursor(), now=now())
    data = json.loads(deliveries(session)[0].payload)["data"]
    assert (data["status"], data["error_code"], data["error_detail"]) == (
        "failed",
        12,
        "bad number",
    )


def test_the_payload_names_the_account_and_the_route(
    session: Session, make_message: Callable[..., Message]
) -> None:
    msg = make_message(callback_url=URL, status="sent", provider="brand", route="otp")
    add_event(session, msg, "sent")
    dispatch(session, OutboxCursor(), now=now())
    data = json.loads(deliveries(session)[0].payload)["data"]
    assert (data["provider"], data["route"]) == ("brand", "otp")


def test_an_event_committed_late_with_a_lower_id_is_picked_up(
    session: Session, make_message: Callable[..., Message]
) -> None:
    msg = make_message(callback_url=URL)
    add_event(session, msg, "queued", event_id=1000)
    add_event(session, msg, "sent", event_id=1002)
    cursor = OutboxCursor()
    dispatch(session, cursor, now=now())
    # id 1001 was taken before 1002 but its transaction commits only now.
    add_event(session, msg, "sending", event_id=1001)

    result = dispatch(session, cursor, now=now())

    assert len(result.created) == 1
    assert [r.event_id for r in deliveries(session)] == [1000, 1001, 1002]


def test_a_disabled_endpoint_gets_nothing(
    session: Session, make_message: Callable[..., Message]
) -> None:
    gone = "https://gone.example.com/hook"
    session.add(DisabledWebhookEndpoint(url=gone, reason="answered 410 Gone"))
    session.commit()
    add_event(session, make_message(callback_url=gone), "sent")
    add_event(session, make_message(callback_url=URL), "sent")

    dispatch(session, OutboxCursor(), now=now())

    assert [r.url for r in deliveries(session)] == [URL]


def test_the_api_keys_default_url_is_used_without_a_callback_url(
    session: Session, make_message: Callable[..., Message]
) -> None:
    key = ApiKey(
        name="shop",
        prefix="abcd1234",
        key_hash="0" * 64,
        webhook_url="https://shop.example.com/hook",
        webhook_secret="whsec_" + "QUJD" * 8,
    )
    session.add(key)
    session.commit()
    add_event(session, make_message(client_id=key.id), "sent")
    add_event(session, make_message(client_id=key.id, callback_url=URL), "sent")

    dispatch(session, OutboxCursor(), now=now())

    rows = deliveries(session)
    assert [(r.url, r.client_id) for r in rows] == [
        ("https://shop.example.com/hook", key.id),
        (URL, key.id),
    ]


def test_a_lost_delivery_is_enqueued_again_once(
    session: Session, make_message: Callable[..., Message]
) -> None:
    add_event(session, make_message(callback_url=URL), "sent")
    start = now()
    cursor = OutboxCursor()
    created = dispatch(session, cursor, now=start).created
    assert dispatch(session, cursor, now=start + dt.timedelta(seconds=10)).requeued == []

    later = start + RECOVER_AFTER + dt.timedelta(seconds=1)
    assert dispatch(session, cursor, now=later).requeued == created
    assert dispatch(session, cursor, now=later + dt.timedelta(seconds=1)).requeued == []


def test_events_from_before_the_startup_lookback_are_not_sent(
    session: Session, make_message: Callable[..., Message]
) -> None:
    msg = make_message(callback_url=URL)
    add_event(session, msg, "queued", at=now() - dt.timedelta(days=2))
    recent = add_event(session, msg, "sent")

    dispatch(session, OutboxCursor(), now=now())

    assert [r.event_id for r in deliveries(session)] == [recent.id]


def test_first_event_id_since(session: Session, make_message: Callable[..., Message]) -> None:
    msg = make_message()
    base = now() - dt.timedelta(hours=5)
    ids = [add_event(session, msg, "queued", at=base + dt.timedelta(hours=h)).id for h in range(5)]
    assert first_event_id_since(session, base + dt.timedelta(hours=2, minutes=30)) == ids[3]
    assert first_event_id_since(session, base - dt.timedelta(hours=1)) == ids[0]
    assert first_event_id_since(session, now()) == ids[-1] + 1
