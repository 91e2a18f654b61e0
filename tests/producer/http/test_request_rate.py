"""The per-key rate limit: counted in Redis per one-second window, 429 with
``Retry-After`` over it, and open (not closed) when Redis is down."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import fakeredis
import httpx
import pytest
import redis
from fastapi import FastAPI
from sqlalchemy.orm import Session

from producer.http.auth import CurrentClient
from producer.http.request_rate import RateLimiter
from producer.keys import create_key
from smsq.api_app import close_app_resources, create_app
from smsq.core.settings import Settings

DEAD_REDIS = "redis://127.0.0.1:1/0"


def test_counts_per_window_and_per_client(redis_client: redis.Redis) -> None:
    now = [1_000.2]
    limiter = RateLimiter(lambda: redis_client, clock=lambda: now[0])
    assert [limiter.hit("a", 3) for _ in range(4)] == [None, None, None, 1]
    assert limiter.hit("b", 3) is None  # another key has its own count
    now[0] = 1_001.0  # the next second starts afresh
    assert limiter.hit("a", 3) is None
    assert 0 < (redis_client.ttl("smsq:api-rate:a:1001") or 0) <= 2  # counters expire


def test_redis_down_lets_requests_through_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = redis.Redis.from_url(DEAD_REDIS, socket_connect_timeout=0.2)
    limiter = RateLimiter(lambda: dead)
    with caplog.at_level(logging.WARNING):
        assert [limiter.hit("a", 1) for _ in range(3)] == [None, None, None]
    assert caplog.text.count("ratelimit.redis_down") == 1
    dead.close()


def build(db_url: str, redis_client: redis.Redis, limit: int = 100) -> FastAPI:
    app = create_app(Settings(database_url=db_url, api_rate_limit=limit, api_key_cache_seconds=0))

    @app.get("/v1/ping")
    def ping(client: CurrentClient) -> dict[str, str]:
        return {"client": client.id}

    app.state.redis = redis_client
    return app


@pytest.fixture
def fake() -> Iterator[redis.Redis]:
    client = fakeredis.FakeRedis()
    yield client
    client.close()


async def get_many(app: FastAPI, key: str, n: int) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://smsq.test", headers=headers
    ) as client:
        return [await client.get("/v1/ping") for _ in range(n)]


async def test_over_the_keys_own_limit_is_429_with_retry_after(
    db_url: str, session: Session, fake: redis.Redis
) -> None:
    app = build(db_url, fake)
    try:
        _, key = create_key(session, "slow", rate_limit=2)
        answers = await get_many(app, key, 5)
    finally:
        close_app_resources(app)
    statuses = [a.status_code for a in answers]
    # Five quick requests may straddle a second boundary: at most 2 per second pass.
    assert statuses.count(200) <= 4 and 429 in statuses
    refused = next(a for a in answers if a.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limited"


async def test_the_default_limit_applies_without_one_on_the_key(
    db_url: str, session: Session, fake: redis.Redis
) -> None:
    app = build(db_url, fake, limit=1)
    try:
        _, key = create_key(session, "shop")
        answers = await get_many(app, key, 4)
    finally:
        close_app_resources(app)
    assert 429 in [a.status_code for a in answers]


async def test_redis_down_does_not_refuse_requests(db_url: str, session: Session) -> None:
    dead = redis.Redis.from_url(DEAD_REDIS, socket_connect_timeout=0.2)
    app = build(db_url, dead, limit=1)
    try:
        _, key = create_key(session, "shop")
        answers = await get_many(app, key, 3)
    finally:
        close_app_resources(app)
    assert [a.status_code for a in answers] == [200, 200, 200]
