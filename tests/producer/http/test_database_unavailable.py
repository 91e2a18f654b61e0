"""The database being away: every request that needs it is answered at once
with a 503 ``unavailable`` and ``Retry-After`` (the drop-in: its vendor code
6, "queue full, retry"), never a hang nor a 500; ``/healthz`` still answers.

The database here is a PostgreSQL URL on a port nobody listens on: the
connection is refused, as while a server restarts. The restart itself, under
load, is ``tests/integration/test_database_outage.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import fakeredis
import httpx
import pytest
from fastapi import FastAPI

from producer.keys import KEY_SCHEME, PREFIX_LENGTH
from smsq.api_app import close_app_resources, create_app
from smsq.core.settings import Settings

DOWN = "postgresql://smsq:s3cret@127.0.0.1:1/smsq"
KEY = f"{KEY_SCHEME}_{'a' * PREFIX_LENGTH}_{'x' * 43}"  # well formed: looked up in the database


@pytest.fixture
def app() -> Iterator[FastAPI]:
    application = create_app(Settings(database_url=DOWN))
    application.state.redis = fakeredis.FakeRedis()
    yield application
    close_app_resources(application)


async def call(app: FastAPI, method: str, path: str, **kwargs: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://smsq.test") as client:
        started = time.monotonic()
        answer = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
        assert time.monotonic() - started < 5, f"{method} {path} took too long"
        return answer


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/messages", {"to": "+4915123000000", "text": "Hi"}),
        ("GET", "/v1/messages/01J0000000000000000000000", None),
        ("GET", "/v1/campaigns", None),
    ],
)
async def test_a_request_needing_the_database_gets_503_with_retry_after(
    app: FastAPI, method: str, path: str, body: object
) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    answer = await call(app, method, path, json=body, headers=headers)
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "unavailable"
    assert answer.headers["Retry-After"] == "5"
    assert "s3cret" not in answer.text and "127.0.0.1" not in answer.text


async def test_the_drop_in_answers_queue_full_with_retry_after(app: FastAPI) -> None:
    answer = await call(
        app, "GET", f"/sendMtSms.php?user=u&apiKey={KEY}&to=%2B4915123000000&message=Hi"
    )
    assert answer.text == "ERROR_6"
    assert answer.headers["Retry-After"] == "5"


async def test_healthz_answers_and_readyz_names_the_database(app: FastAPI) -> None:
    assert (await call(app, "GET", "/healthz")).status_code == 200
    ready = await call(app, "GET", "/readyz")
    assert ready.status_code == 503 and ready.json()["failed"] == ["database"]
