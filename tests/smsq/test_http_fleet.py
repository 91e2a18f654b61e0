"""``GET /v1/fleet`` through ``smsq.api_app``: the same document as
``smsq fleet status --json``, behind an API key."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import fakeredis
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session

from models.status import MessageStatus
from models.tables import Message
from producer.keys import create_key
from smsq.api_app import close_app_resources, create_app
from smsq.core.settings import Settings
from worker import fleet
from worker.throttle import pause_provider

S = MessageStatus


@pytest.fixture
def app(db_url: str, write_providers: Callable[..., Path]) -> Iterator[FastAPI]:
    providers = write_providers(panel={"rate": 40})
    application = create_app(Settings(database_url=db_url, providers_file=providers))
    application.state.redis = fakeredis.FakeRedis()
    application.state.fleet_broker = fakeredis.FakeRedis()
    application.state.fleet_workers = lambda: [fleet.WorkerInfo("celery@otp-1", ["otp"])]
    yield application
    close_app_resources(application)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://smsq.test"
    ) as c:
        yield c


async def test_fleet_needs_an_api_key(client: httpx.AsyncClient) -> None:
    answer = await client.get("/v1/fleet")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"


async def test_fleet_shows_workers_queues_providers_and_unknown(
    app: FastAPI,
    client: httpx.AsyncClient,
    session: Session,
    make_message: Callable[..., Message],
) -> None:
    key = create_key(session, "dashboard")[1]
    make_message(status=S.UNKNOWN)
    make_message(status=S.SENT, sent_at=dt.datetime.now(dt.UTC))
    app.state.fleet_broker.lpush("otp", "task")
    pause_provider(app.state.redis, "panel")

    answer = await client.get("/v1/fleet", headers={"Authorization": f"Bearer {key}"})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["workers"] == [{"name": "celery@otp-1", "queues": ["otp"]}]
    assert {q["name"]: q["depth"] for q in body["queues"]} == {
        "otp": 1,
        "transactional": 0,
        "campaign": 0,
        "webhooks": 0,
    }
    panel = body["providers"][0]
    assert (panel["name"], panel["paused"], panel["configured_rate"]) == ("panel", True, 40)
    assert (panel["breaker"], panel["breaker_since"], panel["breaker_reason"]) == (
        "closed",
        None,
        None,
    )
    assert body["unknown"] == 1
    assert body["sent_per_second_1m"] == pytest.approx(1 / 60)
    assert body["problems"] == []
    dt.datetime.fromisoformat(body["at"])


async def test_fleet_events_lists_pauses_and_breaker_changes_behind_a_key(
    app: FastAPI, client: httpx.AsyncClient, session: Session
) -> None:
    key = create_key(session, "dashboard")[1]
    auth = {"Authorization": f"Bearer {key}"}
    settings: Settings = app.state.settings
    fleet.pause(settings, app.state.redis, "panel")
    fleet.resume(settings, app.state.redis, "panel")

    assert (await client.get("/v1/fleet/events")).status_code == 401
    answer = await client.get("/v1/fleet/events", headers=auth)
    assert answer.status_code == 200, answer.text
    events = answer.json()["events"]
    assert [(e["account"], e["event"], e["by"]) for e in events] == [
        ("panel", "paused", "operator"),
        ("panel", "resumed", "operator"),
    ]
    assert dt.datetime.fromisoformat(events[0]["at"]) <= dt.datetime.now(dt.UTC)

    newest = await client.get("/v1/fleet/events", params={"limit": 1}, headers=auth)
    assert [e["event"] for e in newest.json()["events"]] == ["resumed"]
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).isoformat()
    after = await client.get("/v1/fleet/events", params={"since": later}, headers=auth)
    assert after.json()["events"] == []
    naive = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).replace(tzinfo=None).isoformat()
    as_utc = await client.get("/v1/fleet/events", params={"since": naive}, headers=auth)
    assert as_utc.status_code == 200 and as_utc.json()["events"] == []  # read as UTC
    ancient = await client.get(
        "/v1/fleet/events", params={"since": "1900-01-01T00:00:00Z"}, headers=auth
    )
    assert len(ancient.json()["events"]) == 2  # regression (fuzz): a 503 for a time before 1970
    bad = await client.get("/v1/fleet/events", params={"limit": 0}, headers=auth)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "limit"


async def test_fleet_events_answer_503_while_redis_is_away(
    app: FastAPI, client: httpx.AsyncClient, session: Session
) -> None:
    key = create_key(session, "dashboard")[1]
    app.state.redis = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    app.state.redis.connection_pool.connection_kwargs["server"].connected = False

    answer = await client.get("/v1/fleet/events", headers={"Authorization": f"Bearer {key}"})

    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "unavailable"
    assert answer.headers["Retry-After"] == "5"
