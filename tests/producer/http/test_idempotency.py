"""``Idempotency-Key`` on POSTs under ``/v1/``: one answer (and one message)
per key, also for concurrent requests, on SQLite and PostgreSQL.

The test route creates a message *without* passing the key to the producer,
so only the middleware stands between two requests and two messages.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.tables import ApiKey, IdempotencyRecord, Message
from producer.api import Producer
from producer.http import idempotency
from producer.http.auth import CurrentClient
from producer.keys import create_key
from smsq.api_app import close_app_resources, create_app
from smsq.core.settings import Settings

BASE = "http://smsq.test"


@dataclass
class Recorder:
    ids: list[str] = field(default_factory=list)

    def send_messages(self, ids: list[str], *, queue: str, eta: dt.datetime | None = None) -> bool:
        self.ids.extend(ids)
        return True

    def start_campaign(self, campaign_id: str, *, eta: dt.datetime | None = None) -> bool:
        return True


class Thing(BaseModel):
    to: str


def build(db_url: str) -> FastAPI:
    settings = Settings(database_url=db_url, api_key_cache_seconds=0, api_rate_limit=10_000)
    app = create_app(settings)
    calls = {"boom": 0, "unavailable": 0}
    app.state.calls = calls

    @app.post("/v1/things", status_code=201)
    def make_thing(body: Thing, client: CurrentClient, request: Request) -> dict[str, str]:
        time.sleep(0.05)  # a request that takes a moment, so requests overlap
        producer: Producer = request.app.state.producer
        receipt = producer.send(body.to, "Hello", client_id=client.id)
        return {"id": receipt.id}

    @app.post("/v1/boom")
    def boom(client: CurrentClient) -> None:
        calls["boom"] += 1
        raise RuntimeError("kaput")

    @app.post("/v1/unavailable")
    def unavailable(client: CurrentClient) -> JSONResponse:
        calls["unavailable"] += 1
        status = 503 if calls["unavailable"] == 1 else 200
        return JSONResponse({"attempt": calls["unavailable"]}, status_code=status)

    @app.post("/v1/campaigns")
    async def upload(request: Request, client: CurrentClient) -> dict[str, object]:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"bytes": size, "id": uuid.uuid4().hex}

    # Ahead of the real /v1/campaigns route: this one only counts the bytes.
    app.router.routes.insert(0, app.router.routes.pop())
    app.state.redis = fakeredis.FakeRedis()
    app.state.producer = Producer(settings, app.state.database.session_factory, Recorder())
    return app


@pytest.fixture
def app(db_url: str) -> Iterator[FastAPI]:
    application = build(db_url)
    yield application
    close_app_resources(application)


@pytest.fixture
def key(session: Session) -> str:
    return create_key(session, "shop")[1]


def client_for(app: FastAPI, key: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.AsyncClient(transport=transport, base_url=BASE, headers=headers)


@pytest.fixture
async def api(app: FastAPI, key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app, key) as client:
        yield client


def messages(session: Session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(Message)) or 0


def idem(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


async def test_the_same_key_and_body_replays_the_first_answer(
    api: httpx.AsyncClient, session: Session
) -> None:
    first = await api.post("/v1/things", json={"to": "+491701234567"}, headers=idem("k1"))
    again = await api.post("/v1/things", json={"to": "+491701234567"}, headers=idem("k1"))
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json() == again.json()
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert messages(session) == 1


async def test_without_a_key_each_post_runs(api: httpx.AsyncClient, session: Session) -> None:
    await api.post("/v1/things", json={"to": "+491701234567"})
    await api.post("/v1/things", json={"to": "+491701234567"})
    assert messages(session) == 2


async def test_the_same_key_with_another_body_is_422(
    api: httpx.AsyncClient, session: Session
) -> None:
    await api.post("/v1/things", json={"to": "+491701234567"}, headers=idem("k1"))
    other = await api.post("/v1/things", json={"to": "+491701234568"}, headers=idem("k1"))
    assert other.status_code == 422
    assert other.json()["error"] == {
        "code": "idempotency_key_reused",
        "message": other.json()["error"]["message"],
        "field": "Idempotency-Key",
    }
    other_path = await api.post("/v1/campaigns", json={"to": "+491701234567"}, headers=idem("k1"))
    assert other_path.status_code == 422
    assert messages(session) == 1


async def test_a_4xx_answer_is_stored_and_replayed(api: httpx.AsyncClient) -> None:
    first = await api.post("/v1/things", json={"to": 5}, headers=idem("bad"))
    again = await api.post("/v1/things", json={"to": 5}, headers=idem("bad"))
    assert first.status_code == again.status_code == 422
    assert first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"


async def test_keys_are_scoped_to_the_api_key(
    app: FastAPI, api: httpx.AsyncClient, session: Session
) -> None:
    _, other_key = create_key(session, "other shop")
    await api.post("/v1/things", json={"to": "+491701234567"}, headers=idem("k1"))
    async with client_for(app, other_key) as other:
        answer = await other.post("/v1/things", json={"to": "+491701234567"}, headers=idem("k1"))
    assert answer.status_code == 201 and "idempotent-replayed" not in answer.headers
    assert messages(session) == 2


async def test_a_5xx_or_a_crash_is_not_stored_so_a_retry_runs(
    app: FastAPI, api: httpx.AsyncClient, session: Session
) -> None:
    first = await api.post("/v1/unavailable", headers=idem("u"))
    retry = await api.post("/v1/unavailable", headers=idem("u"))
    assert (first.status_code, retry.status_code) == (503, 200)
    assert retry.json() == {"attempt": 2}
    crash = await api.post("/v1/boom", headers=idem("b"))
    crash_again = await api.post("/v1/boom", headers=idem("b"))
    assert crash.status_code == crash_again.status_code == 500
    assert app.state.calls["boom"] == 2
    session.expire_all()
    assert session.get(IdempotencyRecord, (_client_id(session), "b")) is None


def _client_id(session: Session) -> str:
    row = session.scalars(select(ApiKey)).first()
    assert row is not None
    return row.id


@pytest.mark.parametrize("value", ["", "x" * 256])
async def test_an_empty_or_too_long_key_is_422_naming_the_header(
    api: httpx.AsyncClient, session: Session, value: str
) -> None:
    answer = await api.post("/v1/things", json={"to": "+491701234567"}, headers=idem(value))
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "Idempotency-Key"
    assert messages(session) == 0


async def test_a_key_of_255_characters_is_fine(api: httpx.AsyncClient) -> None:
    answer = await api.post("/v1/things", json={"to": "+491701234567"}, headers=idem("k" * 255))
    assert answer.status_code == 201


async def test_without_a_valid_api_key_nothing_is_recorded(app: FastAPI, session: Session) -> None:
    async with client_for(app, "smsq_abcdefgh_wrong") as stranger:
        answer = await stranger.post("/v1/things", json={"to": "+49170"}, headers=idem("k"))
    assert answer.status_code == 401
    assert session.scalars(select(IdempotencyRecord)).first() is None


async def test_concurrent_requests_with_one_key_create_one_message(
    api: httpx.AsyncClient, session: Session
) -> None:
    answers = await asyncio.gather(
        *[
            api.post("/v1/things", json={"to": "+491701234567"}, headers=idem("race"))
            for _ in range(6)
        ]
    )
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 5
    assert messages(session) == 1


def test_concurrent_requests_from_threads_create_one_message(
    app: FastAPI, key: str, session: Session
) -> None:
    # Each thread has its own event loop: truly parallel requests, racing in
    # the database (on PostgreSQL, two connections inserting the same key).
    barrier = threading.Barrier(4)
    results: list[httpx.Response] = []

    async def one() -> httpx.Response:
        async with client_for(app, key) as client:
            barrier.wait()
            return await client.post(
                "/v1/things", json={"to": "+491701234567"}, headers=idem("threads")
            )

    def run() -> None:
        results.append(asyncio.run(one()))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 4
    assert {r.status_code for r in results} == {201}
    assert len({r.json()["id"] for r in results}) == 1
    assert messages(session) == 1


async def test_a_request_still_running_makes_a_repeat_wait_then_409(
    api: httpx.AsyncClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(idempotency, "WAIT_SECONDS", 0.2)
    session.add(IdempotencyRecord(client_id=_client_id(session), key="slow", request_hash=""))
    session.commit()
    answer = await api.post("/v1/things", json={"to": "+491701234567"}, headers=idem("slow"))
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "idempotency_in_progress"
    assert answer.headers["retry-after"] == "1"
    assert messages(session) == 0


async def test_an_expired_record_is_replaced(api: httpx.AsyncClient, session: Session) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    session.add(
        IdempotencyRecord(
            client_id=_client_id(session),
            key="old",
            request_hash="something else",
            status_code=201,
            body='{"id": "old"}',
            created_at=long_ago,
        )
    )
    session.commit()
    answer = await api.post("/v1/things", json={"to": "+491701234567"}, headers=idem("old"))
    assert answer.status_code == 201 and answer.json()["id"] != "old"
    assert messages(session) == 1


async def test_an_upload_is_hashed_while_it_streams(api: httpx.AsyncClient) -> None:
    multipart = {"Content-Type": "multipart/form-data; boundary=b", **idem("csv")}

    def body(tail: bytes) -> AsyncIterator[bytes]:
        async def gen() -> AsyncIterator[bytes]:
            for _ in range(50):
                yield b"phone\n+491701234567\n" * 100
            yield tail

        return gen()

    first = await api.post("/v1/campaigns", content=body(b"end"), headers=multipart)
    again = await api.post("/v1/campaigns", content=body(b"end"), headers=multipart)
    other = await api.post("/v1/campaigns", content=body(b"END"), headers=multipart)
    assert first.status_code == 200 and first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 422


async def test_only_posts_under_v1_are_covered(app: FastAPI, session: Session, key: str) -> None:
    async with client_for(app, key) as client:
        await client.get("/healthz", headers=idem("g"))
        await client.post(
            "/dlr/panelsms", json={"transactionId": "x", "status": "delivered"}, headers=idem("d")
        )
    assert session.scalars(select(IdempotencyRecord)).first() is None


async def test_the_app_lifespan_runs_through_the_middleware(
    make_api: Callable[..., FastAPI],
) -> None:
    # Regression: the middleware read scope["path"] of the lifespan scope
    # (KeyError), so the app's startup and shutdown never ran under uvicorn.
    app = make_api()
    sent: list[str] = []
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, str]:
        return next(incoming)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_an_answer_that_cannot_be_stored_frees_the_key(
    api: httpx.AsyncClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression (review): a failed store.finish left the record "running",
    # so every retry with the key waited 10 s and got 409, for an hour.
    def broken_finish(*_: object) -> None:
        raise ConnectionError("database went away")

    monkeypatch.setattr(idempotency.IdempotencyStore, "finish", broken_finish)
    first = await api.post("/v1/things", json={"to": "+491701234567"}, headers=idem("f"))
    assert first.status_code == 201  # the client got its answer
    session.expire_all()
    assert session.get(IdempotencyRecord, (_client_id(session), "f")) is None
