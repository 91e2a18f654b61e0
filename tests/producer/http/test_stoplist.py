"""``/v1/stoplist`` over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.tables import Suppression
from producer.keys import create_key


def number(i: int) -> str:
    return f"+4915550{i:06d}"


@pytest.fixture
def app(make_api: Callable[..., FastAPI]) -> FastAPI:
    return make_api()


@pytest.fixture
def api(
    app: FastAPI, session: Session, make_client: Callable[..., httpx.AsyncClient]
) -> httpx.AsyncClient:
    return make_client(app, create_key(session, "crm")[1])


def listed(session: Session) -> dict[str, str]:
    session.expire_all()
    return {s.number: s.reason for s in session.scalars(select(Suppression))}


async def test_add_numbers_normalizes_and_reports_bad_values(
    api: httpx.AsyncClient, session: Session
) -> None:
    answer = await api.post(
        "/v1/stoplist",
        json={
            "numbers": ["+49 170 1234567", "0049 170 1234567", "nope", number(1), 5],
            "reason": "replied STOP",
        },
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert {k: body[k] for k in ("added", "already", "rejected")} == {
        "added": 2,
        "already": 1,
        "rejected": 2,
    }
    assert [(e["row"], e["value"]) for e in body["errors"]] == [(3, "nope"), (5, "5")]
    assert listed(session) == {"+491701234567": "replied STOP", number(1): "replied STOP"}

    again = await api.post("/v1/stoplist", json={"numbers": [number(1)], "reason": "other"})
    assert (again.json()["added"], again.json()["already"]) == (0, 1)
    assert listed(session)[number(1)] == "replied STOP"  # the first reason stays


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"numbers": "+491701234567"}, "numbers"),
        ({}, "numbers"),
        ({"numbers": [], "reason": "x" * 201}, "reason"),
        ({"numbers": [], "why": "x"}, "why"),
    ],
)
async def test_an_invalid_add_is_422_naming_the_field(
    api: httpx.AsyncClient, session: Session, body: dict[str, object], field: str
) -> None:
    answer = await api.post("/v1/stoplist", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field
    assert listed(session) == {}


async def test_remove_a_number(api: httpx.AsyncClient, session: Session) -> None:
    await api.post("/v1/stoplist", json={"numbers": ["+491701234567"]})

    removed = await api.delete("/v1/stoplist/%2B49%20170%201234567")
    assert (removed.status_code, removed.content) == (204, b"")
    assert listed(session) == {}

    gone = await api.delete("/v1/stoplist/+491701234567")
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "not_found"
    bad = await api.delete("/v1/stoplist/nope")
    assert (bad.status_code, bad.json()["error"]["field"]) == (422, "number")


async def test_list_pages_through_in_number_order(api: httpx.AsyncClient, session: Session) -> None:
    numbers = [number(i) for i in range(5)]
    await api.post("/v1/stoplist", json={"numbers": numbers[::-1], "reason": "r"})

    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if after is not None:
            params["after"] = after
        answer = await api.get("/v1/stoplist", params=params)
        assert answer.status_code == 200
        page = answer.json()
        seen += [item["number"] for item in page["items"]]
        pages += 1
        after = page["next"]
        if after is None:
            break
    assert seen == numbers and pages == 3
    first = (await api.get("/v1/stoplist")).json()["items"][0]
    assert first["reason"] == "r"
    assert dt.datetime.fromisoformat(first["created_at"]).tzinfo is not None
    assert (await api.get("/v1/stoplist", params={"limit": 0})).status_code == 422


async def test_import_a_csv(api: httpx.AsyncClient, session: Session) -> None:
    content = (f"name,mobile\nAda,{number(1)}\nBob,not a number\nCy\nDee,{number(2)}\n").encode()
    answer = await api.post(
        "/v1/stoplist/import",
        data={"column": "mobile", "reason": "import"},
        files={"file": ("stop.csv", content, "text/csv")},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["added"], body["rejected"]) == (2, 2)
    assert [e["row"] for e in body["errors"]] == [2, 3]
    assert listed(session) == {number(1): "import", number(2): "import"}


async def test_import_without_the_column_is_422(api: httpx.AsyncClient, session: Session) -> None:
    answer = await api.post(
        "/v1/stoplist/import", files={"file": ("stop.csv", b"name\nAda\n", "text/csv")}
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "file"
    assert "phone" in answer.json()["error"]["message"]
    no_file = await api.post("/v1/stoplist/import", files={"column": (None, "phone")})
    assert (no_file.status_code, no_file.json()["error"]["field"]) == (422, "file")


async def test_without_a_key_the_list_is_not_shown(app: FastAPI) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://smsq.test"
    ) as anonymous:
        assert (await anonymous.get("/v1/stoplist")).status_code == 401
        assert (await anonymous.delete(f"/v1/stoplist/{number(1)}")).status_code == 401
