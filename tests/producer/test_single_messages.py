"""The one path of single messages: one, a list (send_many), a batch (send_each)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models.tables import Message, Suppression
from producer.api import Producer
from producer.errors import InvalidField
from producer.message_spec import check_message
from producer.numbers import normalize_number
from producer.single_messages import CheckedSend, send_each, send_many
from smsq.core.settings import Settings

# The recorder fixture (tests/producer/conftest.py); its type, for annotations.
RecordingEnqueuer = Any

NOW = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.UTC)
BATCH = 3


@pytest.fixture
def producer(db_url: str, sessions: sessionmaker[Session], recorder: RecordingEnqueuer) -> Producer:
    settings = Settings(database_url=db_url, batch_size=BATCH, max_recipients=10)
    return Producer(settings, sessions, recorder, clock=lambda: NOW)


# --- send_many: one text to a list, all or nothing --------------------------------


def test_send_many_stores_all_then_enqueues_tasks_of_batch_size(
    producer: Producer, recorder: RecordingEnqueuer, session: Session
) -> None:
    session.add(Suppression(number="+4915123000002"))
    session.commit()
    numbers = [f"+49151230000{i:02d}" for i in range(1, 8)]
    receipts = send_many(producer, numbers, "Your parcel is here", client_id="shop")
    assert [r.status for r in receipts] == ["queued", "suppressed"] + ["queued"] * 5
    assert [len(call.ids) for call in recorder.calls] == [3, 3]
    assert [mid for call in recorder.calls for mid in call.ids] == [
        r.id for r in receipts if r.status == "queued"
    ]
    # Every row was committed, with its first event, before the first task.
    first = recorder.calls[0]
    assert len(first.visible) == 3
    assert all(seen == ("queued", ["queued"]) for seen in first.visible.values())


def test_send_many_names_the_first_bad_number_and_writes_nothing(
    producer: Producer, recorder: RecordingEnqueuer, session: Session
) -> None:
    with pytest.raises(InvalidField) as exc:
        send_many(producer, ["+4915123000001", "not a number"], "Hello")
    assert exc.value.field == "to[1]"
    with pytest.raises(InvalidField, match="at most 10 numbers"):
        send_many(producer, ["+4915123000001"] * 11, "Hello")
    assert session.scalar(select(func.count()).select_from(Message)) == 0
    assert recorder.calls == []


# --- send_each: single sends that arrived together, one transaction ---------------


def checked(
    producer: Producer,
    to: str,
    *,
    kind: str = "transactional",
    key: str | None = None,
    stop_list: bool = True,
) -> CheckedSend:
    spec = check_message(
        producer.settings,
        now=NOW,
        text="Your parcel is here",
        kind=kind,
        send_at=None,
        provider=None,
        validity=None,
        sender=None,
        callback_url=None,
        stop_list=stop_list,
        flash=False,
        client_id="shop",
        idempotency_key=key,
    )
    return CheckedSend(normalize_number(to, field="to"), spec, key)


def test_send_each_stores_all_in_one_go_and_enqueues_one_task_per_queue(
    producer: Producer, recorder: RecordingEnqueuer, session: Session
) -> None:
    session.add(Suppression(number="+4915123000003"))
    session.commit()
    items = [
        checked(producer, "+4915123000001", kind="otp"),
        checked(producer, "+4915123000002"),
        checked(producer, "+4915123000003"),  # stop-listed
        checked(producer, "+4915123000004", kind="otp"),
    ]
    receipts = send_each(producer, items)
    assert [getattr(r, "status", r) for r in receipts] == [
        "queued",
        "queued",
        "suppressed",
        "queued",
    ]
    calls = {call.queue: call for call in recorder.calls}
    assert len(recorder.calls) == 2
    assert calls["otp"].ids == [receipts[0].id, receipts[3].id]  # type: ignore[union-attr]
    assert calls["transactional"].ids == [receipts[1].id]  # type: ignore[union-attr]
    # Committed (with their first event) before any was enqueued.
    assert calls["otp"].visible[receipts[0].id] == ("queued", ["queued"])  # type: ignore[union-attr]


def test_send_each_answers_a_repeated_key_with_the_first_message(
    producer: Producer, recorder: RecordingEnqueuer, session: Session
) -> None:
    before = send_each(producer, [checked(producer, "+4915123000001", key="order-1")])
    again = send_each(
        producer,
        [
            checked(producer, "+4915123000001", key="order-1"),  # sent before
            checked(producer, "+4915123000002", key="order-2"),
            checked(producer, "+4915123000002", key="order-2"),  # twice in this batch
        ],
    )
    assert again[0] == before[0]
    assert again[1] == again[2]
    assert session.scalar(select(func.count()).select_from(Message)) == 2
    assert sum(len(call.ids) for call in recorder.calls) == 2


def test_send_each_honours_each_items_own_stop_list_choice(
    producer: Producer, session: Session
) -> None:
    # Regression (review): an item with stop_list=False was suppressed when
    # another item of the batch, checking the stop list, had the same number.
    session.add(Suppression(number="+4915123000003"))
    session.commit()
    receipts = send_each(
        producer,
        [
            checked(producer, "+4915123000003"),
            checked(producer, "+4915123000003", kind="otp", stop_list=False),
        ],
    )
    assert [getattr(r, "status", r) for r in receipts] == ["suppressed", "queued"]


def test_a_number_whose_route_cannot_carry_the_message_is_refused_before_the_batch(
    db_url: str,
    sessions: sessionmaker[Session],
    recorder: RecordingEnqueuer,
    providers_file: Any,
    session: Session,
) -> None:
    # A sender of its own: fine on the French route (panelsms accounts), not on
    # the German OTP route (brand always sends its brandID). Refused when the
    # request is checked, so a batch of other requests is not failed with it.
    settings = Settings(database_url=db_url, providers_file=providers_file())
    producer = Producer(settings, sessions, recorder, clock=lambda: NOW)
    spec = check_message(
        settings,
        now=NOW,
        text="Code 1234",
        kind="otp",
        send_at=None,
        provider=None,
        validity=None,
        sender="SHOP",
        callback_url=None,
        stop_list=True,
        flash=False,
        client_id="shop",
        idempotency_key=None,
    )
    with pytest.raises(InvalidField) as info:
        CheckedSend("+4915123456789", spec)
    assert info.value.field == "sender" and "route 'otp-dach'" in info.value.reason
    (receipt,) = send_each(producer, [CheckedSend("+33612345678", spec)])
    stored = session.get_one(Message, receipt.id)  # type: ignore[union-attr]
    assert (stored.route, stored.provider, stored.sender) == ("fr-mobile", "panel2", "SHOP")
