"""What the HTTP API tests share: an app on the test database, and clients of it.

``make_api(enqueuer=..., clock=..., **settings)`` builds ``create_app`` on
the ``db_url`` database with one panelsms account, an in-memory Redis for the
rate limit, and (given an enqueuer) a producer that records instead of
publishing; ``make_client(app, key)`` is an ``httpx.AsyncClient`` on it,
authenticated when given a key. Both are closed after the test.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import httpx
import pytest
from fastapi import FastAPI

from producer.api import Producer
from smsq.api_app import close_app_resources, create_app
from smsq.core.settings import Settings


@pytest.fixture
def providers_file(write_providers: Callable[..., Path]) -> Path:
    return write_providers()


@pytest.fixture
def make_api(db_url: str, providers_file: Path) -> Iterator[Callable[..., FastAPI]]:
    apps: list[FastAPI] = []

    def make(
        *,
        enqueuer: Any = None,  # a smsq.core.publisher.Publisher
        clock: Callable[[], dt.datetime] | None = None,
        **settings_fields: Any,
    ) -> FastAPI:
        settings_fields.setdefault("providers_file", providers_file)
        settings = Settings(database_url=db_url, **settings_fields)
        app = create_app(settings)
        app.state.redis = fakeredis.FakeRedis()
        if enqueuer is not None:
            sessions = app.state.database.session_factory
            app.state.producer = (
                Producer(settings, sessions, enqueuer, clock=clock)
                if clock is not None
                else Producer(settings, sessions, enqueuer)
            )
        apps.append(app)
        return app

    yield make
    for app in apps:
        close_app_resources(app)


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def make(
        app: FastAPI, key: str | None = None, base_url: str = "http://smsq.test"
    ) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=base_url, headers=headers
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
