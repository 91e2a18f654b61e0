"""The request shape: body size (413, counted while streaming) and content type (415)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI, Request

from smsq.api_app import close_app_resources, create_app
from smsq.core.settings import Settings

LIMIT = 2048
UPLOAD_LIMIT = 8192


@pytest.fixture
def app() -> Iterator[FastAPI]:
    settings = Settings(
        database_url="sqlite://", max_body_bytes=LIMIT, max_upload_bytes=UPLOAD_LIMIT
    )
    application = create_app(settings)

    @application.post("/v1/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @application.post("/v1/campaigns")
    async def upload(request: Request) -> dict[str, int]:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"bytes": size}

    # Ahead of the real /v1/campaigns route: this one only counts the bytes.
    application.router.routes.insert(0, application.router.routes.pop())
    yield application
    close_app_resources(application)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://smsq.test") as c:
        yield c


def chunks(total: int, size: int = 512) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        sent = 0
        while sent < total:
            piece = min(size, total - sent)
            sent += piece
            yield b"x" * piece

    return gen()


JSON = {"Content-Type": "application/json"}


async def test_a_body_within_the_limit_passes(client: httpx.AsyncClient) -> None:
    answer = await client.post("/v1/echo", content=b"1" * LIMIT, headers=JSON)
    assert answer.json() == {"bytes": LIMIT}


async def test_a_content_length_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    answer = await client.post("/v1/echo", content=b"1" * (LIMIT + 1), headers=JSON)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "body_too_large"


async def test_a_chunked_body_is_counted_while_it_streams(client: httpx.AsyncClient) -> None:
    answer = await client.post("/v1/echo", content=chunks(LIMIT * 4), headers=JSON)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "body_too_large"


async def test_an_upload_gets_the_upload_limit(client: httpx.AsyncClient) -> None:
    multipart = {"Content-Type": "multipart/form-data; boundary=xyz"}
    ok = await client.post("/v1/campaigns", content=chunks(LIMIT * 3), headers=multipart)
    assert ok.json() == {"bytes": LIMIT * 3}
    big = await client.post("/v1/campaigns", content=chunks(UPLOAD_LIMIT + 1), headers=multipart)
    assert (big.status_code, big.json()["error"]["code"]) == (413, "body_too_large")
    # JSON to the same path keeps the JSON limit.
    json_body = await client.post("/v1/campaigns", content=b"1" * (LIMIT + 1), headers=JSON)
    assert json_body.status_code == 413


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/v1/echo", "text/plain"),
        ("/v1/echo", "application/x-www-form-urlencoded"),
        ("/v1/echo", "multipart/form-data; boundary=xyz"),
        ("/v1/campaigns", "text/csv"),
        ("/sendMtSms.php", "text/plain"),
    ],
)
async def test_a_wrong_content_type_is_415_naming_the_accepted_ones(
    client: httpx.AsyncClient, path: str, content_type: str
) -> None:
    answer = await client.post(path, content=b"a=b", headers={"Content-Type": content_type})
    assert answer.status_code == 415
    error = answer.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert error["field"] == "Content-Type"
    assert "application/json" in error["message"] or "form" in error["message"]


async def test_a_body_without_content_type_is_415(client: httpx.AsyncClient) -> None:
    answer = await client.post("/v1/echo", content=b"{}")
    assert answer.status_code == 415


async def test_a_post_without_a_body_needs_no_content_type(client: httpx.AsyncClient) -> None:
    answer = await client.post("/v1/echo")
    assert answer.json() == {"bytes": 0}


async def test_json_with_a_charset_is_json(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/v1/echo", content=b"{}", headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert answer.json() == {"bytes": 2}
