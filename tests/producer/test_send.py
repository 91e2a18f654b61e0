from __future__ import annotations

import base64
import datetime as dt
import json
import pickle
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import structlog
from sqlalchemy import event, func, select
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from models.db import make_sessionmaker
from models.sms_text import analyze
from models.tables import Message, MessageEvent, Suppression
from producer import api
from producer.api import Producer
from producer.errors import InvalidField, Unavailable
from smsq.core.publisher import TaskPublisher
from smsq.core.settings import Settings

# The recorder fixture (tests/producer/conftest.py); its type, for annotations.
RecordingEnqueuer = Any
EventsOf = Callable[[str], list[str]]

NOW = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.UTC)
HORIZON = 120


class FailingEnqueuer:
    """A broker that is down, reported the rude way: by raising."""

    def __init__(self) -> None:
        self.attempts = 0

    def send_messages(self, ids: list[str], *, queue: str, eta: dt.datetime | None = None) -> bool:
        self.attempts += 1
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    def start_campaign(self, campaign_id: str, *, eta: dt.datetime | None = None) -> bool:
        raise ConnectionError("down")


def make_settings(db_url: str) -> Settings:
    return Settings(
        database_url=db_url,
        schedule_horizon=HORIZON,
        otp_validity=600,
        default_validity=86_400,
        max_parts=10,
        timezone="Europe/Berlin",
    )


@pytest.fixture
def producer(db_url: str, sessions: sessionmaker[Session], recorder: RecordingEnqueuer) -> Producer:
    return Producer(make_settings(db_url), sessions, recorder, clock=lambda: NOW)


def row(session: Session, message_id: str) -> Message:
    session.expire_all()
    return session.get_one(Message, message_id)


# --- the ordinary path -----------------------------------------------------------


def test_send_returns_a_receipt_and_enqueues_on_the_kind_queue(
    producer: Producer, recorder: RecordingEnqueuer, session: Session
) -> None:
    receipt = producer.send("+49 170 1234567", "Your order shipped", sender="SHOP")
    assert receipt.status == "queued"
    assert (receipt.encoding, receipt.segments) == ("gsm7", 1)
    message = row(session, receipt.id)
    assert (message.to, message.text, message.sender) == (
        "+491701234567",
        "Your order shipped",
        "SHOP",
    )
    assert (message.kind, message.provider, message.status) == ("transactional", "panel", "queued")
    assert [(c.ids, c.queue, c.eta) for c in recorder.calls] == [
        ([receipt.id], "transactional", None)
    ]

    otp = producer.send("+447911123456", "Code 123456", kind="otp", provider="brand")
    assert recorder.calls[-1].queue == "otp"
    assert row(session, otp.id).provider == "brand"


def test_long_unicode_text_reports_its_encoding_and_parts(producer: Producer) -> None:
    text = "Grüße aus Köln ☀ " * 5
    receipt = producer.send("+491701234567", text)
    sms = analyze(text)
    assert (receipt.encoding, receipt.segments) == ("ucs2", sms.segments) == ("ucs2", 2)


def test_row_and_event_are_committed_before_the_enqueue(
    producer: Producer, recorder: RecordingEnqueuer
) -> None:
    receipt = producer.send("+491701234567", "Hello")
    (call,) = recorder.calls
    # Read by the enqueuer in a session of its own, at the moment of the call.
    assert call.visible == {receipt.id: ("queued", ["queued"])}


def test_the_first_event_is_from_the_producer(producer: Producer, session: Session) -> None:
    receipt = producer.send("+491701234567", "Hello")
    (ev,) = session.scalars(select(MessageEvent).where(MessageEvent.message_id == receipt.id))
    assert (ev.status, ev.source, ev.applied, ev.created_at) == ("queued", "producer", True, NOW)


def test_invalid_input_names_the_field_and_writes_nothing(
    producer: Producer, recorder: RecordingEnqueuer, session: Session
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"to": "+49 170 CALLME"}, "to"),
        ({"text": "x" * 2000}, "text"),
        ({"kind": "campaign"}, "kind"),
        ({"provider": "acme"}, "provider"),
        ({"send_at": "2026-01-01T10:00:00+00:00"}, "send_at"),
        ({"send_at": "2026-02-01T10:00:00"}, "send_at"),
        ({"validity": 0}, "validity"),
        ({"sender": ""}, "sender"),
        ({"callback_url": "nope"}, "callback_url"),
        ({"idempotency_key": "k" * 256}, "idempotency_key"),
    ]
    for override, name in cases:
        args: dict[str, Any] = {"to": "+491701234567", "text": "Hello", **override}
        with pytest.raises(InvalidField) as exc:
            producer.send(args.pop("to"), args.pop("text"), **args)
        assert exc.value.field == name, override
    assert session.scalar(select(func.count()).select_from(Message)) == 0
    assert recorder.calls == []


# --- idempotency -------------------------------------------------------------


def test_same_idempotency_key_returns_the_same_message(
    producer: Producer, recorder: RecordingEnqueuer, session: Session
) -> None:
    first = producer.send("+491701234567", "Hello", idempotency_key="order-1", client_id="shop")
    again = producer.send("+491701234567", "Hello", idempotency_key="order-1", client_id="shop")
    assert again == first
    assert session.scalar(select(func.count()).select_from(Message)) == 1
    assert len(recorder.calls) == 1  # the repeat enqueues nothing

    # The repeat reports the message's current status, not a new one.
    message = row(session, first.id)
    message.status = "delivered"
    session.commit()
    later = producer.send("+491701234567", "Hello", idempotency_key="order-1", client_id="shop")
    assert (later.id, later.status) == (first.id, "delivered")


def test_the_key_is_per_client(producer: Producer, session: Session) -> None:
    a = producer.send("+491701234567", "Hello", idempotency_key="k1", client_id="shop")
    b = producer.send("+491701234567", "Hello", idempotency_key="k1", client_id="bank")
    c = producer.send("+491701234567", "Hello", idempotency_key="k1")
    assert len({a.id, b.id, c.id}) == 3
    assert session.scalar(select(func.count()).select_from(Message)) == 3


def test_a_concurrent_insert_with_the_same_key_wins_and_is_returned(
    db_url: str, sessions: sessionmaker[Session], recorder: RecordingEnqueuer, session: Session
) -> None:
    """The other request commits between our lookup and our insert."""
    producer = Producer(make_settings(db_url), sessions, recorder, clock=lambda: NOW)
    winner: dict[str, str] = {}

    @event.listens_for(sessions, "do_orm_execute")
    def _race(state: ORMExecuteState) -> Any:
        if winner or not state.is_select or "idempotency_key" not in str(state.statement):
            return None
        result = state.invoke_statement()  # our lookup: nothing there yet
        other = Producer(make_settings(db_url), make_sessionmaker(sessions.kw["bind"]), recorder)
        winner["id"] = other.send(
            "+491701234567", "Hello", idempotency_key="race", client_id="shop"
        ).id
        return result

    receipt = producer.send("+491701234567", "Hello", idempotency_key="race", client_id="shop")
    assert receipt.id == winner["id"]
    assert receipt.status == "queued"
    assert session.scalar(select(func.count()).select_from(Message)) == 1
    assert [c.ids for c in recorder.calls] == [[winner["id"]]]  # only the winner's enqueue


# --- stop list ---------------------------------------------------------------


def test_a_stop_listed_number_is_recorded_suppressed_and_not_enqueued(
    producer: Producer, recorder: RecordingEnqueuer, session: Session, events_of: EventsOf
) -> None:
    session.add(Suppression(number="+491701234567", reason="STOP"))
    session.commit()
    receipt = producer.send("+49 170 1234567", "Hello")
    assert receipt.status == "suppressed"
    message = row(session, receipt.id)
    assert (message.status, message.finished_at) == ("suppressed", NOW)
    assert events_of(receipt.id) == ["suppressed"]
    assert recorder.calls == []


def test_stop_list_false_lets_an_otp_through(
    producer: Producer, recorder: RecordingEnqueuer, session: Session
) -> None:
    session.add(Suppression(number="+491701234567"))
    session.commit()
    receipt = producer.send("+491701234567", "Code 1234", kind="otp", stop_list=False)
    assert receipt.status == "queued"
    assert row(session, receipt.id).stop_list is False
    assert [c.queue for c in recorder.calls] == ["otp"]


# --- scheduling and validity -------------------------------------------------------


def test_a_far_send_time_is_scheduled_without_a_task(
    producer: Producer, recorder: RecordingEnqueuer, session: Session, events_of: EventsOf
) -> None:
    receipt = producer.send("+491701234567", "Tomorrow", send_at="2026-01-16 09:00")
    assert receipt.status == "scheduled"
    message = row(session, receipt.id)
    # Europe/Berlin is UTC+1 in January.
    assert message.send_at == dt.datetime(2026, 1, 16, 8, 0, tzinfo=dt.UTC)
    assert message.expires_at == message.send_at + dt.timedelta(seconds=86_400)
    assert events_of(receipt.id) == ["scheduled"]
    assert recorder.calls == []


def test_a_send_time_within_the_horizon_is_enqueued_with_an_eta(
    producer: Producer, recorder: RecordingEnqueuer, session: Session
) -> None:
    soon = NOW + dt.timedelta(seconds=HORIZON - 30)
    receipt = producer.send("+491701234567", "Soon", send_at=soon.isoformat())
    assert receipt.status == "queued"
    assert [(c.ids, c.eta) for c in recorder.calls] == [([receipt.id], soon)]
    assert row(session, receipt.id).send_at == soon


def test_expiry_counts_from_now_or_from_the_send_time(producer: Producer, session: Session) -> None:
    plain = producer.send("+491701234567", "Hello")
    otp = producer.send("+491701234567", "Code", kind="otp")
    short = producer.send("+491701234567", "Code", kind="otp", validity=30)
    later = NOW + dt.timedelta(hours=3)
    scheduled = producer.send("+491701234567", "Later", send_at=later, validity=60)
    assert row(session, plain.id).expires_at == NOW + dt.timedelta(days=1)
    assert row(session, otp.id).expires_at == NOW + dt.timedelta(seconds=600)
    assert row(session, short.id).expires_at == NOW + dt.timedelta(seconds=30)
    assert row(session, scheduled.id).expires_at == later + dt.timedelta(seconds=60)


# --- a broker that is down -----------------------------------------------------------


def test_a_failing_enqueuer_leaves_the_row_queued_and_the_call_succeeds(
    db_url: str, sessions: sessionmaker[Session], session: Session
) -> None:
    failing = FailingEnqueuer()
    producer = Producer(make_settings(db_url), sessions, failing, clock=lambda: NOW)
    with structlog.testing.capture_logs() as logs:
        receipt = producer.send("+491701234567", "Hello")
    assert receipt.status == "queued"
    assert failing.attempts == 1
    assert row(session, receipt.id).status == "queued"  # the sweeper will send it
    assert [entry["log_level"] for entry in logs] == ["error"]
    assert "sweeper" in logs[0]["event"]


def test_celery_enqueuer_with_a_dead_broker_returns_false_quickly(
    db_url: str, sessions: sessionmaker[Session], session: Session
) -> None:
    dead = TaskPublisher.for_broker("redis://127.0.0.1:1/0")  # nothing listens on port 1
    producer = Producer(make_settings(db_url), sessions, dead, clock=lambda: NOW)
    try:
        started = time.monotonic()
        with structlog.testing.capture_logs() as logs:
            receipt = producer.send("+491701234567", "Hello")
        took = time.monotonic() - started
    finally:
        dead.close()
    assert receipt.status == "queued"
    assert row(session, receipt.id).status == "queued"
    assert took < 5
    assert logs and logs[0]["task"] == "smsq.send_messages"


@pytest.fixture
def broker(real_redis_url: str) -> Iterator[tuple[TaskPublisher, redis.Redis, str]]:
    enqueuer = TaskPublisher.for_broker(real_redis_url)
    client = redis.Redis.from_url(real_redis_url)
    queue = f"smsq-test-{uuid.uuid4().hex[:8]}"  # ours alone, whoever shares the Redis
    yield enqueuer, client, queue
    client.delete(queue)
    client.close()
    enqueuer.close()


@pytest.mark.integration
def test_celery_enqueuer_publishes_a_send_task_by_name(
    broker: tuple[TaskPublisher, redis.Redis, str],
) -> None:
    enqueuer, client, queue = broker
    eta = NOW + dt.timedelta(minutes=1)
    assert enqueuer.send_messages(["id-1", "id-2"], queue=queue, eta=eta)
    raw = client.lpop(queue)
    assert isinstance(raw, bytes)
    envelope = json.loads(raw)
    assert envelope["headers"]["task"] == "smsq.send_messages"
    assert dt.datetime.fromisoformat(envelope["headers"]["eta"]) == eta
    args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
    assert (args, kwargs) == ([["id-1", "id-2"]], {})


def test_from_settings_builds_a_working_producer_without_touching_the_broker(
    db_url: str, session: Session
) -> None:
    settings = make_settings(db_url).model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    producer = Producer.from_settings(settings)
    assert isinstance(producer.enqueuer, TaskPublisher)
    assert producer.enqueuer.app.conf.broker_url == "redis://127.0.0.1:1/0"
    with structlog.testing.capture_logs():
        receipt = producer.send("+491701234567", "Hello")  # broker down: logged, not raised
    assert row(session, receipt.id).status == "queued"
    producer.enqueuer.close()
    producer.sessions.kw["bind"].dispose()


# --- the module-level API ------------------------------------------------------------


def test_module_level_send_uses_the_default_producer(
    producer: Producer, recorder: RecordingEnqueuer
) -> None:
    api.set_default_producer(producer)
    try:
        receipt = api.send("+491701234567", "Hello")
    finally:
        api.set_default_producer(None)
    assert [c.ids for c in recorder.calls] == [[receipt.id]]


# --- the database away ---------------------------------------------------------


def test_send_raises_unavailable_quickly_when_the_database_is_away() -> None:
    settings = Settings(database_url="postgresql://smsq:s3cret@127.0.0.1:1/smsq")
    with Producer.from_settings(settings) as producer:
        started = time.monotonic()
        with pytest.raises(Unavailable) as raised:
            producer.send("+4915123000000", "Hi")
        with pytest.raises(Unavailable):
            producer.submit_campaign("Spring", ["+4915123000000"], "Hi")
    assert time.monotonic() - started < 5
    error = raised.value
    assert (error.service, error.retry_after) == ("database", 5)
    assert "s3cret" not in str(error) and "127.0.0.1" not in str(error)
    assert isinstance(error, ConnectionError)
    assert pickle.loads(pickle.dumps(error)).service == "database"


# --- routes (docs/routing.md) -----------------------------------------------------


@pytest.fixture
def routed(
    db_url: str,
    sessions: sessionmaker[Session],
    recorder: RecordingEnqueuer,
    providers_file: Callable[..., Any],
) -> Producer:
    settings = make_settings(db_url).model_copy(
        update={"providers_file": providers_file(), "default_provider": "panel"}
    )
    return Producer(settings, sessions, recorder, clock=lambda: NOW)


def test_a_send_is_stored_with_its_route_and_the_route_s_first_account(
    routed: Producer, session: Session
) -> None:
    sent = {
        "de otp": routed.send("+4915123456789", "Code 1", kind="otp"),
        "fr otp": routed.send("+33612345678", "Code 2", kind="otp"),
        "us otp": routed.send("+12015550123", "Code 3", kind="otp"),
        "gb": routed.send("+447400123456", "Shipped"),
        "de named route": routed.send("+4917012345678", "Hi", provider="uk"),
        "de named account": routed.send("+4915123456789", "Code 4", kind="otp", provider="brand"),
    }
    stored = {name: row(session, r.id) for name, r in sent.items()}
    assert {name: (m.provider, m.route) for name, m in stored.items()} == {
        "de otp": ("brand", "otp-dach"),
        "fr otp": ("panel2", "fr-mobile"),
        "us otp": ("panel", None),  # no route matches: SMSQ_DEFAULT_PROVIDER
        "gb": ("panel2", "uk"),
        "de named route": ("panel2", "uk"),
        "de named account": ("brand", None),
    }


def test_a_message_its_route_cannot_carry_is_refused(
    routed: Producer, recorder: RecordingEnqueuer, session: Session
) -> None:
    with pytest.raises(InvalidField) as info:
        routed.send("+4915123456789", "Code 1", kind="otp", flash=True)
    assert info.value.field == "flash"
    assert "route 'otp-dach'" in str(info.value)
    assert session.scalar(select(func.count()).select_from(Message)) == 0
    assert recorder.calls == []
    # On a route of panelsms accounts a flash SMS is fine.
    ok = routed.send("+33612345678", "Code 2", kind="otp", flash=True)
    assert (row(session, ok.id).route, row(session, ok.id).flash) == ("fr-mobile", True)


def test_without_routes_no_message_has_one(producer: Producer, session: Session) -> None:
    receipt = producer.send("+4915123456789", "Code", kind="otp")
    assert (row(session, receipt.id).provider, row(session, receipt.id).route) == ("panel", None)
