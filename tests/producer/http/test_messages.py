"""``/v1/messages`` over HTTP, on SQLite and PostgreSQL: what a client sees
(status codes, JSON) and what is stored and enqueued."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from models.ledger import apply_status
from models.status import EventSource
from models.status import MessageStatus as S
from models.tables import IdempotencyRecord, Message, MessageEvent, Suppression
from producer.keys import create_key

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
HOOK = "https://hooks.example.com/smsq"


def number(i: int) -> str:
    return f"+4915550{i:06d}"


@dataclass
class Recorder:
    """An enqueuer that records what would have been published."""

    calls: list[tuple[list[str], str, dt.datetime | None]] = field(default_factory=list)

    def send_messages(self, ids: list[str], *, queue: str, eta: dt.datetime | None = None) -> bool:
        self.calls.append((list(ids), queue, eta))
        return True

    def start_campaign(self, campaign_id: str, *, eta: dt.datetime | None = None) -> bool:
        return True

    def ids(self) -> list[str]:
        return [mid for ids, _, _ in self.calls for mid in ids]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def app(make_api: Callable[..., FastAPI], recorder: Recorder) -> FastAPI:
    return make_api(enqueuer=recorder, clock=lambda: NOW, max_recipients=1000)


@pytest.fixture
def key(session: Session) -> str:
    return create_key(session, "shop", webhook_url=HOOK)[1]


@pytest.fixture
def api(app: FastAPI, key: str, make_client: Callable[..., httpx.AsyncClient]) -> httpx.AsyncClient:
    return make_client(app, key)


def stored(session: Session) -> list[Message]:
    session.expire_all()
    return list(session.scalars(select(Message).order_by(Message.id)))


async def test_one_message_is_accepted_stored_and_enqueued(
    api: httpx.AsyncClient, session: Session, recorder: Recorder
) -> None:
    answer = await api.post("/v1/messages", json={"to": "+49 170 1234567", "text": "Hello"})

    assert answer.status_code == 202
    body = answer.json()
    assert body == {"id": body["id"], "status": "queued", "encoding": "gsm7", "segments": 1}
    [message] = stored(session)
    assert (message.id, message.to, message.status) == (body["id"], "+491701234567", "queued")
    assert message.callback_url == HOOK  # the key's webhook URL by default
    assert message.client_id != ""
    assert recorder.calls == [([body["id"]], "transactional", None)]


async def test_otp_with_its_own_callback_goes_on_the_otp_queue(
    api: httpx.AsyncClient, session: Session, recorder: Recorder
) -> None:
    answer = await api.post(
        "/v1/messages",
        json={
            "to": "+491701234567",
            "text": "Your code is 123456",
            "kind": "otp",
            "callback_url": "https://other.example.com/cb",
        },
    )
    assert answer.status_code == 202
    [message] = stored(session)
    assert (message.kind, message.callback_url) == ("otp", "https://other.example.com/cb")
    assert message.expires_at == NOW + dt.timedelta(minutes=10)
    assert recorder.calls[0][1] == "otp"


async def test_a_list_of_a_thousand_numbers_is_one_answer_in_order(
    api: httpx.AsyncClient, session: Session, recorder: Recorder
) -> None:
    numbers = [number(i) for i in range(1000)]
    session.add(Suppression(number=numbers[7], reason="STOP"))
    session.commit()

    started = time.perf_counter()
    answer = await api.post("/v1/messages", json={"to": numbers, "text": "Sale today"})
    elapsed = time.perf_counter() - started

    assert answer.status_code == 202, answer.text
    receipts = answer.json()
    assert len(receipts) == 1000
    rows = {m.id: m for m in stored(session)}
    assert [rows[r["id"]].to for r in receipts] == numbers
    assert [r["status"] for r in receipts].count("suppressed") == 1
    assert receipts[7]["status"] == "suppressed" and rows[receipts[7]["id"]].status == "suppressed"
    # One task per SMSQ_BATCH_SIZE (500) ids, not one per number.
    assert [len(ids) for ids, _, _ in recorder.calls] == [500, 499]
    assert set(recorder.ids()) == {r["id"] for r in receipts if r["status"] == "queued"}
    events = session.scalar(select(func.count()).select_from(MessageEvent))
    assert events == 1000
    assert elapsed < 10, f"a list of 1,000 took {elapsed:.1f} s"


async def test_one_bad_number_in_a_list_refuses_all_naming_it(
    api: httpx.AsyncClient, session: Session, recorder: Recorder
) -> None:
    answer = await api.post(
        "/v1/messages", json={"to": [number(1), number(2), "+49 170", number(3)], "text": "Hi"}
    )
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_field", "to[2]")
    assert "too short" in error["message"]
    assert stored(session) == [] and recorder.calls == []


async def test_more_numbers_than_allowed_is_422_naming_to(
    api: httpx.AsyncClient, session: Session
) -> None:
    answer = await api.post(
        "/v1/messages", json={"to": [number(i) for i in range(1001)], "text": "Hi"}
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "to"
    assert "at most 1000" in answer.json()["error"]["message"]
    assert stored(session) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": "+491701234567", "text": "x" * 1531}, "text"),  # 11 parts > SMSQ_MAX_PARTS
        ({"to": "+491701234567"}, "text"),
        ({"text": "Hi"}, "to"),
        ({"to": 491701234567, "text": "Hi"}, "to"),
        ({"to": [], "text": "Hi"}, "to"),
        ({"to": ["+491701234567", 5], "text": "Hi"}, "to[1]"),
        ({"to": "+491701234567", "text": "Hi", "kind": "campaign"}, "kind"),
        ({"to": "+491701234567", "text": "Hi", "provider": "nope"}, "provider"),
        ({"to": "+491701234567", "text": "Hi", "send_at": "2020-01-01T00:00:00Z"}, "send_at"),
        ({"to": "+491701234567", "text": "Hi", "sendAt": "tomorrow"}, "sendAt"),
        ({"to": ["+491701234567"], "text": "Hi", "callback_url": "ftp://x"}, "callback_url"),
    ],
)
async def test_invalid_input_is_422_naming_the_field(
    api: httpx.AsyncClient, session: Session, body: dict[str, object], field: str
) -> None:
    answer = await api.post("/v1/messages", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "invalid_field"
    assert answer.json()["error"]["field"] == field
    assert stored(session) == []


async def test_a_scheduled_list_waits_in_the_database(
    api: httpx.AsyncClient, session: Session, recorder: Recorder
) -> None:
    answer = await api.post(
        "/v1/messages",
        json={"to": [number(1), number(2)], "text": "Later", "send_at": "2026-03-02T09:00:00Z"},
    )
    assert answer.status_code == 202
    assert [r["status"] for r in answer.json()] == ["scheduled", "scheduled"]
    assert [m.status for m in stored(session)] == ["scheduled", "scheduled"]
    assert recorder.calls == []


async def test_without_a_key_nothing_is_sent(app: FastAPI, session: Session) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://smsq.test"
    ) as anonymous:
        answer = await anonymous.post("/v1/messages", json={"to": number(1), "text": "Hi"})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    assert stored(session) == []


async def test_a_message_shows_its_history_but_not_its_text(
    api: httpx.AsyncClient, session: Session
) -> None:
    sent = await api.post("/v1/messages", json={"to": number(1), "text": "Your code is 482910"})
    message_id = sent.json()["id"]
    message = session.get_one(Message, message_id)
    apply_status(session, message, S.SENDING, source=EventSource.WORKER, at=NOW)
    apply_status(session, message, S.FAILED, source=EventSource.WORKER, provider_code=12, at=NOW)
    message.error_code, message.error_detail, message.attempts = 12, "unknown subscriber", 1
    session.commit()

    answer = await api.get(f"/v1/messages/{message_id}")

    assert answer.status_code == 200
    body = answer.json()
    assert "482910" not in answer.text and "text" not in body
    assert body["status"] == "failed"
    assert (body["error_code"], body["error_detail"], body["attempts"]) == (
        12,
        "unknown subscriber",
        1,
    )
    assert [(e["status"], e["source"], e["provider_code"]) for e in body["events"]] == [
        ("queued", "producer", None),
        ("sending", "worker", None),
        ("failed", "worker", 12),
    ]
    assert body["events"][1]["created_at"] == "2026-03-01T12:00:00Z"


async def test_a_message_shows_its_provider_and_route(
    api: httpx.AsyncClient, session: Session
) -> None:
    plain = (await api.post("/v1/messages", json={"to": number(1), "text": "Hi"})).json()["id"]
    routed = (await api.post("/v1/messages", json={"to": number(2), "text": "Hi"})).json()["id"]
    session.execute(
        update(Message).where(Message.id == routed).values(provider="brand", route="otp")
    )
    session.commit()

    shown = [(await api.get(f"/v1/messages/{mid}")).json() for mid in (plain, routed)]

    assert [(body["provider"], body["route"]) for body in shown] == [
        ("panel", None),
        ("brand", "otp"),
    ]


async def test_another_clients_message_is_404_like_a_missing_one(
    app: FastAPI, api: httpx.AsyncClient, session: Session
) -> None:
    sent = await api.post("/v1/messages", json={"to": number(1), "text": "Hi"})
    other_key = create_key(session, "other")[1]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://smsq.test",
        headers={"Authorization": f"Bearer {other_key}"},
    ) as other:
        theirs = await other.get(f"/v1/messages/{sent.json()['id']}")
        missing = await other.get("/v1/messages/no-such-id")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()
    assert (await api.get(f"/v1/messages/{sent.json()['id']}")).status_code == 200


async def test_a_repeated_list_with_an_idempotency_key_is_sent_once(
    api: httpx.AsyncClient, session: Session, recorder: Recorder
) -> None:
    body = {"to": [number(1), number(2)], "text": "Once"}
    headers = {"Idempotency-Key": "order-42"}
    first = await api.post("/v1/messages", json=body, headers=headers)
    second = await api.post("/v1/messages", json=body, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert len(stored(session)) == 2 and len(recorder.ids()) == 2


async def test_a_retry_after_a_lost_answer_does_not_send_twice(
    api: httpx.AsyncClient, session: Session, recorder: Recorder
) -> None:
    # The message was committed but the answer never reached the client (the
    # idempotency record is gone, as after a 5xx): the message's own key holds.
    body = {"to": number(1), "text": "Once"}
    headers = {"Idempotency-Key": "order-43"}
    first = await api.post("/v1/messages", json=body, headers=headers)
    session.execute(delete(IdempotencyRecord))
    session.commit()
    second = await api.post("/v1/messages", json=body, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert len(stored(session)) == 1 and len(recorder.ids()) == 1


async def test_the_routes_are_documented_with_examples(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    post = spec["paths"]["/v1/messages"]["post"]
    assert {"202", "401", "422", "429"} <= set(post["responses"])
    schema = spec["components"]["schemas"]["SendMessage"]
    assert schema["examples"][0]["kind"] == "otp"
    assert "text" not in spec["components"]["schemas"]["MessageOut"]["properties"]


class DeadBroker:
    def send_messages(self, ids: list[str], *, queue: str, eta: dt.datetime | None = None) -> bool:
        raise ConnectionError("Connection refused")

    def start_campaign(self, campaign_id: str, *, eta: dt.datetime | None = None) -> bool:
        raise ConnectionError("Connection refused")


async def test_a_dead_broker_still_accepts_a_list(
    app: FastAPI, api: httpx.AsyncClient, session: Session
) -> None:
    app.state.producer.enqueuer = DeadBroker()
    answer = await api.post("/v1/messages", json={"to": [number(1), number(2)], "text": "Hi"})
    assert answer.status_code == 202
    # Committed as queued: the worker's sweeper enqueues them later.
    assert [m.status for m in stored(session)] == ["queued", "queued"]
