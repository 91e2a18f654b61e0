"""``/healthz`` (the process answers) and ``/readyz`` (database and Redis answer)."""

from __future__ import annotations

from collections.abc import Iterator

import fakeredis
import httpx
import pytest
import redis
from fastapi import FastAPI

from producer.http.deps import Database
from smsq.api_app import close_app_resources, create_app
from smsq.core.settings import Settings

DEAD_REDIS = "redis://:hunter2@127.0.0.1:1/0"


@pytest.fixture
def app(db_url: str) -> Iterator[FastAPI]:
    application = create_app(Settings(database_url=db_url, redis_url=DEAD_REDIS))
    application.state.redis = fakeredis.FakeRedis()
    yield application
    close_app_resources(application)


async def get(app: FastAPI, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://smsq.test") as client:
        return await client.get(path)


async def test_healthz_answers_while_the_process_runs(app: FastAPI) -> None:
    answer = await get(app, "/healthz")
    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})


async def test_ready_when_database_and_redis_answer(app: FastAPI) -> None:
    answer = await get(app, "/readyz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ready", "database": "ok", "redis": "ok"}


async def test_not_ready_names_redis_without_its_url(app: FastAPI) -> None:
    app.state.redis = redis.Redis.from_url(DEAD_REDIS, socket_connect_timeout=0.2)
    answer = await get(app, "/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "not_ready" and body["failed"] == ["redis"]
    assert body["database"] == "ok" and body["redis"] != "ok"
    assert "hunter2" not in answer.text and "6379" not in answer.text and ":1" not in answer.text


async def test_not_ready_names_the_database(app: FastAPI, tmp_path: object) -> None:
    app.state.database = Database("sqlite:////nonexistent-dir/never/smsq.db")
    answer = await get(app, "/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["failed"] == ["database"] and body["redis"] == "ok"
    assert "nonexistent" not in answer.text


async def test_healthz_needs_no_database(app: FastAPI) -> None:
    app.state.database = Database("sqlite:////nonexistent-dir/never/smsq.db")
    assert (await get(app, "/healthz")).status_code == 200
