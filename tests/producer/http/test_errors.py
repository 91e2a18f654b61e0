"""Every error answer has one JSON shape: ``{"error": {code, message, field}}``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from producer.errors import InvalidField
from producer.http.errors import ApiError, field_path
from smsq.api_app import close_app_resources, create_app
from smsq.core.settings import Settings


class Send(BaseModel):
    to: str | list[str]
    text: str


@pytest.fixture
def app(tmp_path: object) -> Iterator[FastAPI]:
    application = create_app(Settings(database_url="sqlite://"))

    @application.post("/v1/send")
    def send(body: Send) -> dict[str, str]:
        return {"ok": "yes"}

    @application.get("/v1/teapot")
    def teapot() -> None:
        raise ApiError(418, "teapot", "short and stout", field="kettle", headers={"X-Tea": "1"})

    @application.get("/v1/invalid")
    def invalid() -> None:
        raise InvalidField("to", "not a phone number")

    @application.get("/v1/crash")
    def crash() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    yield application
    close_app_resources(application)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # raise_app_exceptions=False: see the 500 a client sees, not the exception.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://smsq.test") as c:
        yield c


def error(answer: httpx.Response) -> dict[str, object]:
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}
    inner: dict[str, object] = body["error"]
    return inner


async def test_api_error_keeps_status_code_field_and_headers(client: httpx.AsyncClient) -> None:
    answer = await client.get("/v1/teapot")
    assert (answer.status_code, answer.headers["x-tea"]) == (418, "1")
    assert error(answer) == {"code": "teapot", "message": "short and stout", "field": "kettle"}


async def test_invalid_field_is_422_naming_the_field(client: httpx.AsyncClient) -> None:
    answer = await client.get("/v1/invalid")
    assert answer.status_code == 422
    assert error(answer) == {
        "code": "invalid_field",
        "message": "not a phone number",
        "field": "to",
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": 5, "text": "hi"}, "to"),
        ({"to": ["+491701234567", "+491701234568", "+491701234569", 7], "text": "x"}, "to[3]"),
        ({"to": "+491701234567"}, "text"),
    ],
)
async def test_validation_errors_name_the_first_bad_field(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    answer = await client.post("/v1/send", json=body)
    assert answer.status_code == 422
    found = error(answer)
    assert (found["code"], found["field"]) == ("invalid_field", field)


def test_field_path_joins_names_and_indexes() -> None:
    assert field_path(("body", "to", 3)) == "to[3]"
    assert field_path(("body", "recipients", 0, "phone")) == "recipients[0].phone"
    assert field_path(("query", "limit")) == "limit"
    assert field_path(("body",)) is None


async def test_a_body_that_is_not_json_is_422(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/v1/send", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 422
    assert error(answer)["code"] == "invalid_field"


async def test_unknown_path_is_404_and_wrong_method_405(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/nothing-here")
    assert (missing.status_code, error(missing)["code"]) == (404, "not_found")
    wrong = await client.delete("/v1/send")
    assert (wrong.status_code, error(wrong)["code"]) == (405, "method_not_allowed")


async def test_a_crash_is_500_without_a_traceback(client: httpx.AsyncClient) -> None:
    answer = await client.get("/v1/crash")
    assert answer.status_code == 500
    assert error(answer)["code"] == "internal_error"
    assert "passwd" not in answer.text and "Traceback" not in answer.text


async def test_the_dlr_receiver_keeps_its_documented_shape(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/dlr/panelsms", content=b"[]", headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert "detail" in answer.json()


def test_field_path_drops_union_member_tags() -> None:
    assert field_path(("body", "to", "str")) == "to"
    assert field_path(("body", "to", "list[str]", 3)) == "to[3]"
    assert field_path(("body", "rows", 0, "Row", "phone")) == "rows[0].phone"
