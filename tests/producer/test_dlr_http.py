"""The delivery-report receiver over HTTP, on SQLite and PostgreSQL.

The app is built from real settings (a providers file with a brand callback
key) on an in-memory Redis, where the receiver queues the reports; ``drain()``
applies the queued reports to the database as the app's applier thread would.
The last test feeds it the simulator's own reports for messages the adapters
sent through it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import httpx
import pytest
import redis
import uvicorn
from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.ledger import apply_status
from models.status import EventSource
from models.status import MessageStatus as S
from models.tables import Message, MessageEvent
from producer.http.deps import Database
from producer.http.dlr import RETRY_AFTER, report_applier
from producer.http.redact import redact_query
from producer.report_stream import FIELD
from providers.base import Accepted, Outbound, Recipient
from providers.registry import make_adapter
from providers.simulator import DlrDispatcher, SimConfig, Simulator, mock_transport
from smsq.api_app import create_app
from smsq.core.names import DLR_STREAM_KEY
from smsq.core.settings import Settings, get_settings

MakeMessage = Callable[..., Message]
CLOSED_PORT_REDIS = "redis://127.0.0.1:1/0"  # nothing listens: connection refused
Drain = Callable[[], int]
SECRET = "cb-secret"
PUBLIC_URL = "http://smsq.test"

PROVIDERS = f"""
[providers.panel]
adapter = "panelsms"
url = "http://sim.test/sendMtSms.php"
user = "demo@example.com"
api_key = "demo-panel-key"
sender = "SMSQ"

[providers.brand]
adapter = "brand"
url = "http://sim.test/brand/send"
key = "demo-brand-key"
brand_id = "SMSQ"
callback_key = "{SECRET}"

[providers.brand2]
adapter = "brand"
url = "http://sim.test/brand/send"
key = "demo-brand-key"
brand_id = "SMSQ"
callback_key = "cb-other"

[providers.nokey]
adapter = "brand"
url = "http://sim.test/brand/send"
key = "demo-brand-key"
brand_id = "SMSQ"
"""

# The vendor's own example body (panelsms-api.source.txt).
VENDOR_PANELSMS_BODY: dict[str, Any] = {
    "transactionId": "1234569",
    "status": "delivered",
    "destination": "+1222333444",
    "timestamp": "2024-01-15T10:30:45Z",
    "errorCode": None,
    "errorDescription": None,
}


def make_settings(db_url: str, path: Path, providers: str = PROVIDERS) -> Settings:
    path.write_text(providers, encoding="utf-8")
    return Settings(database_url=db_url, providers_file=path, public_url=PUBLIC_URL)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path / "providers.toml")


@pytest.fixture
def app(settings: Settings) -> Iterator[FastAPI]:
    application = create_app(settings)
    application.state.redis = fakeredis.FakeRedis()
    yield application
    database: Database = application.state.database
    database.dispose()


def http_client(app: FastAPI) -> httpx.AsyncClient:
    # Starlette's TestClient now warns when used with httpx; ASGITransport is
    # the same app without a server (its lifespan does not run: the engine is
    # made on first use and disposed by the ``app`` fixture).
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL)


@pytest.fixture
def drain(app: FastAPI) -> Drain:
    """Apply the reports the receiver queued; how many."""
    return report_applier(app).drain


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(app) as test_client:
        yield test_client


def brand_query(sms_id: str, status_id: str = "1", key: str | None = SECRET) -> dict[str, str]:
    query = {"smsID": sms_id, "number": "4917012345678", "statusID": status_id}
    query["date"] = "2026-02-01 23:30:05"
    return query if key is None else {"key": key, **query}


def status_of(session: Session, message: Message) -> str:
    session.expire_all()
    found = session.get(Message, message.id)
    assert found is not None
    return found.status


def events_of(session: Session, message: Message) -> list[MessageEvent]:
    query = select(MessageEvent).where(MessageEvent.message_id == message.id)
    return list(session.scalars(query.order_by(MessageEvent.id)))


def unmatched(adapter: str) -> float:
    value = REGISTRY.get_sample_value("smsq_dlr_unmatched_total", {"adapter": adapter})
    return value or 0.0


async def test_healthz(client: httpx.AsyncClient) -> None:
    answer = await client.get("/healthz")
    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})


# --- brand -------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "wrong", "cb-secre", "cb-secret ", "clé"])
async def test_brand_wrong_or_missing_key_is_403(
    client: httpx.AsyncClient,
    session: Session,
    make_message: MakeMessage,
    key: str | None,
    drain: Drain,
) -> None:
    message = make_message(provider="brand", status=S.SENT, provider_message_id="100")
    answer = await client.get("/dlr/brand", params=brand_query("100", key=key))
    assert (answer.status_code, answer.text) == (403, "Forbidden")
    assert drain() == 0
    assert status_of(session, message) == S.SENT and events_of(session, message) == []


async def test_brand_right_key_records_the_status(
    client: httpx.AsyncClient, session: Session, make_message: MakeMessage, drain: Drain
) -> None:
    message = make_message(provider="brand", status=S.SENT, provider_message_id="100")
    answer = await client.get("/dlr/brand", params=brand_query("100"))
    assert (answer.status_code, answer.text) == (200, "OK")
    assert drain() == 1
    assert status_of(session, message) == S.DELIVERED
    [event] = events_of(session, message)
    assert event.source == EventSource.DLR
    assert event.payload == brand_query("100", key=None)  # stored without the key


async def test_the_vendor_php_example_callback(
    client: httpx.AsyncClient, session: Session, make_message: MakeMessage, drain: Drain
) -> None:
    # The query the vendor's PHP receiver reads, as a provider would send it.
    message = make_message(provider="brand", status=S.SENT, provider_message_id="5551234")
    url = "/dlr/brand?key=cb-secret&smsID=5551234&number=4917012345678&statusID=2"
    answer = await client.get(url + "&date=2026-02-01%2023%3A30%3A05")
    assert (answer.status_code, answer.text) == (200, "OK")
    drain()
    assert status_of(session, message) == S.FAILED


async def test_a_key_matches_only_its_own_accounts_messages(
    client: httpx.AsyncClient, session: Session, make_message: MakeMessage, drain: Drain
) -> None:
    message = make_message(provider="brand2", status=S.SENT, provider_message_id="200")
    before = unmatched("brand")
    assert (await client.get("/dlr/brand", params=brand_query("200"))).status_code == 200
    drain()
    assert unmatched("brand") == before + 1
    assert status_of(session, message) == S.SENT
    assert (
        await client.get("/dlr/brand", params=brand_query("200", key="cb-other"))
    ).status_code == 200
    drain()
    assert status_of(session, message) == S.DELIVERED


@pytest.mark.parametrize(("missing", "field"), [("smsID", "smsID"), ("statusID", "statusID")])
async def test_brand_missing_field_is_422_naming_it(
    client: httpx.AsyncClient, missing: str, field: str
) -> None:
    query = brand_query("100")
    del query[missing]
    answer = await client.get("/dlr/brand", params=query)
    assert answer.status_code == 422
    assert answer.json() == {"detail": f"{field}: missing"}


async def test_brand_missing_field_with_a_wrong_key_is_still_403(client: httpx.AsyncClient) -> None:
    assert (await client.get("/dlr/brand", params={"key": "wrong"})).status_code == 403


async def test_brand_unknown_id_is_200_and_counted(client: httpx.AsyncClient, drain: Drain) -> None:
    before = unmatched("brand")
    answer = await client.get("/dlr/brand", params=brand_query("never-sent"))
    assert (answer.status_code, answer.text) == (200, "OK")
    drain()
    assert unmatched("brand") == before + 1


async def test_without_any_callback_key_every_brand_report_is_403(
    db_url: str, tmp_path: Path, session: Session, make_message: MakeMessage
) -> None:
    providers = PROVIDERS.replace(f'callback_key = "{SECRET}"', "")
    providers = providers.replace('callback_key = "cb-other"', "")
    app = create_app(make_settings(db_url, tmp_path / "p.toml", providers))
    message = make_message(provider="brand", status=S.SENT, provider_message_id="100")
    async with http_client(app) as client:
        for key in (SECRET, "", "anything"):
            answer = await client.get("/dlr/brand", params=brand_query("100", key=key))
            assert answer.status_code == 403
    app.state.database.dispose()
    assert status_of(session, message) == S.SENT


async def test_duplicate_and_late_reports_change_nothing(
    client: httpx.AsyncClient, session: Session, make_message: MakeMessage, drain: Drain
) -> None:
    message = make_message(provider="brand", status=S.SENT, provider_message_id="300")
    for status_id in ("1", "1", "0"):  # delivered, delivered again, a late "sent"
        assert (
            await client.get("/dlr/brand", params=brand_query("300", status_id))
        ).status_code == 200
    drain()
    assert status_of(session, message) == S.DELIVERED
    assert [(e.status, e.applied) for e in events_of(session, message)] == [
        (S.DELIVERED, True),
        (S.DELIVERED, False),
        (S.SENT, False),
    ]


async def test_the_callback_key_is_never_logged(
    client: httpx.AsyncClient,
    session: Session,
    make_message: MakeMessage,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    drain: Drain,
) -> None:
    # The test's own httpx client plays the provider; its request log is not ours.
    # (set_level also sets caplog's handler level, so the DEBUG call comes last.)
    caplog.set_level(logging.WARNING, logger="httpx")
    caplog.set_level(logging.DEBUG)
    make_message(provider="brand", status=S.SENT, provider_message_id="400")
    wrong = "wrong-key-8c1f"
    assert (await client.get("/dlr/brand", params=brand_query("400", key=wrong))).status_code == 403
    assert (await client.get("/dlr/brand", params=brand_query("400"))).status_code == 200
    assert (await client.get("/dlr/brand", params=brand_query("nope"))).status_code == 200
    drain()
    out = capsys.readouterr()
    logged = caplog.text + out.out + out.err
    for event in ("dlr.forbidden", "dlr.recorded", "dlr.unmatched"):
        assert event in logged  # the test sees the logs...
    assert "400" in logged and "nope" in logged  # ...with the ids...
    assert SECRET not in logged and wrong not in logged  # ...and never a key
    payloads = [e.payload for e in session.scalars(select(MessageEvent))]
    assert payloads and all(p is not None and "key" not in p for p in payloads)


def test_access_log_lines_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    """uvicorn logs the path with its query; the key is masked in it."""
    create_app(Settings(database_url="sqlite://"))  # installs the filter
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    path = "/dlr/brand?key=cb-secret&smsID=1&statusID=1"
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", path, "1.1", 200
    )
    assert "cb-secret" not in caplog.text
    assert "/dlr/brand?key=***&smsID=1&statusID=1" in caplog.text
    assert redact_query("/x?apiKey=k&key=&a=key=1") == "/x?apiKey=***&key=***&a=key=1"


def test_uvicorn_factory_builds_the_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SMSQ_DATABASE_URL", f"sqlite:///{tmp_path / 'smsq.db'}")
    get_settings.cache_clear()
    try:
        config = uvicorn.Config("smsq.api_app:create_app", factory=True, log_config=None)
        config.load()
        app = config.loaded_app
        while hasattr(app, "app"):  # uvicorn's middleware wrappers
            app = app.app
        assert isinstance(app, FastAPI) and app.title == "smsq"
        assert app.state.settings.database_url.endswith("smsq.db")
    finally:
        get_settings.cache_clear()


# --- the queue in Redis ------------------------------------------------------


async def test_the_answer_comes_once_redis_holds_the_report(
    app: FastAPI, client: httpx.AsyncClient, session: Session, make_message: MakeMessage
) -> None:
    message = make_message(provider="brand", status=S.SENT, provider_message_id="500")
    answer = await client.get("/dlr/brand", params=brand_query("500"))
    assert (answer.status_code, answer.text) == (200, "OK")
    # Queued, not applied yet: the answer did not wait for the database.
    [(_id, fields)] = app.state.redis.xrange(DLR_STREAM_KEY)
    entry = json.loads(fields[FIELD])
    assert entry["raw"] == brand_query("500", key=None) and entry["accounts"] == ["brand"]
    assert SECRET not in fields[FIELD].decode()
    assert status_of(session, message) == S.SENT
    assert report_applier(app).drain() == 1
    assert status_of(session, message) == S.DELIVERED
    assert app.state.redis.xlen(DLR_STREAM_KEY) == 0


@pytest.mark.parametrize("adapter", ["brand", "panelsms"])
async def test_without_redis_a_report_is_503_with_retry_after(
    app: FastAPI, client: httpx.AsyncClient, adapter: str
) -> None:
    app.state.redis = redis.Redis.from_url(
        CLOSED_PORT_REDIS, socket_connect_timeout=0.5, socket_timeout=0.5
    )
    started = time.monotonic()
    if adapter == "brand":
        answer = await client.get("/dlr/brand", params=brand_query("600"))
    else:
        answer = await client.post("/dlr/panelsms", json=VENDOR_PANELSMS_BODY)
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == str(RETRY_AFTER)
    assert "Redis unavailable" in answer.json()["detail"]
    assert time.monotonic() - started < 3  # refused at once, never a hang
    # The checks still come first: a wrong key is 403 whatever Redis does.
    assert (await client.get("/dlr/brand", params={"key": "wrong"})).status_code == 403


async def test_the_served_app_applies_reports_itself(
    real_redis_url: str, settings: Settings, session: Session, make_message: MakeMessage
) -> None:
    """Its lifespan runs the applier thread: nobody drains by hand here."""
    store = redis.Redis.from_url(real_redis_url)
    store.delete(DLR_STREAM_KEY)
    app = create_app(settings.model_copy(update={"redis_url": real_redis_url}))
    message = make_message(status=S.SENT)
    body = {**VENDOR_PANELSMS_BODY, "transactionId": message.id}
    try:
        async with app.router.lifespan_context(app), http_client(app) as client:
            assert (await client.post("/dlr/panelsms", json=body)).status_code == 200
            deadline = time.monotonic() + 10
            while status_of(session, message) != S.DELIVERED and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        assert status_of(session, message) == S.DELIVERED
        assert store.xlen(DLR_STREAM_KEY) == 0
    finally:
        store.delete(DLR_STREAM_KEY)
        store.close()


# --- panelsms ----------------------------------------------------------------


async def test_panelsms_vendor_example_body(
    client: httpx.AsyncClient, session: Session, make_message: MakeMessage, drain: Drain
) -> None:
    message = make_message(id="1234569", status=S.SENT)
    answer = await client.post("/dlr/panelsms", json=VENDOR_PANELSMS_BODY)
    assert (answer.status_code, answer.json()) == (200, {"success": True})
    drain()
    assert status_of(session, message) == S.DELIVERED
    [event] = events_of(session, message)
    assert event.payload == VENDOR_PANELSMS_BODY


async def test_panelsms_undelivered_keeps_the_code(
    client: httpx.AsyncClient, session: Session, make_message: MakeMessage, drain: Drain
) -> None:
    message = make_message(status=S.SENT)
    body = {**VENDOR_PANELSMS_BODY, "transactionId": message.id, "status": "undelivered"}
    body |= {"errorCode": 11, "errorDescription": "Destination barred"}
    assert (await client.post("/dlr/panelsms", json=body)).status_code == 200
    drain()
    session.expire_all()
    stored = session.get(Message, message.id)
    assert stored is not None
    assert (stored.status, stored.error_code, stored.error_detail) == (
        S.UNDELIVERED,
        11,
        "Destination barred",
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "body is empty; expected a JSON object"),
        (b"transactionId=1&status=delivered", "body is not valid JSON"),
        (b'{"transactionId": "1",', "body is not valid JSON"),
        (b'{"transactionId": NaN}', "body is not valid JSON: NaN is not a JSON value"),
        (b"\xff\xfe", "body is not valid JSON"),
        (b"[1, 2]", "body must be a JSON object, not an array"),
        (b'"delivered"', "body must be a JSON object, not a string"),
        (b"null", "body must be a JSON object, not null"),
    ],
)
async def test_panelsms_body_that_is_not_a_json_object_is_400(
    client: httpx.AsyncClient, content: bytes, problem: str
) -> None:
    answer = await client.post(
        "/dlr/panelsms", content=content, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith(problem)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "transactionId"),
        ({"status": "delivered"}, "transactionId"),
        ({"transactionId": "", "status": "delivered"}, "transactionId"),
        ({"transactionId": "1234569"}, "status"),
        ({"transactionId": "1234569", "status": 1}, "status"),
    ],
)
async def test_panelsms_missing_field_is_422_naming_it(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    answer = await client.post("/dlr/panelsms", json=body)
    assert (answer.status_code, answer.json()) == (422, {"detail": f"{field}: missing"})


async def test_panelsms_unknown_id_is_200_and_counted(
    client: httpx.AsyncClient, drain: Drain
) -> None:
    before = unmatched("panelsms")
    answer = await client.post("/dlr/panelsms", json={**VENDOR_PANELSMS_BODY, "transactionId": "x"})
    assert (answer.status_code, answer.json()) == (200, {"success": True})
    drain()
    assert unmatched("panelsms") == before + 1


async def test_panelsms_matches_only_panelsms_accounts_messages(
    client: httpx.AsyncClient, session: Session, make_message: MakeMessage, drain: Drain
) -> None:
    message = make_message(provider="brand", status=S.SENT, provider_message_id="7")
    before = unmatched("panelsms")
    body = {**VENDOR_PANELSMS_BODY, "transactionId": message.id}
    assert (await client.post("/dlr/panelsms", json=body)).status_code == 200
    drain()
    assert unmatched("panelsms") == before + 1
    assert status_of(session, message) == S.SENT


async def test_panelsms_duplicate_is_idempotent(
    client: httpx.AsyncClient, session: Session, make_message: MakeMessage, drain: Drain
) -> None:
    message = make_message(status=S.SENT)
    body = {**VENDOR_PANELSMS_BODY, "transactionId": message.id}
    for _ in range(2):
        assert (await client.post("/dlr/panelsms", json=body)).status_code == 200
    late = {**body, "status": "sent"}
    assert (await client.post("/dlr/panelsms", json=late)).status_code == 200
    drain()
    assert status_of(session, message) == S.DELIVERED
    assert [e.applied for e in events_of(session, message)] == [True, False, False]


# --- end to end with the provider simulator ----------------------------------


async def test_simulator_reports_end_delivered(
    app: FastAPI, settings: Settings, session: Session, make_message: MakeMessage, drain: Drain
) -> None:
    """Messages sent through the simulator by the real adapters; its reports
    (a "sent" first, then "delivered", concurrently) land in this app."""
    sim = Simulator(
        SimConfig(
            seed=3,
            dlr_delay=0,
            dlr_sent_first=True,
            brand_callback_url=f"{PUBLIC_URL}/dlr/brand",
            brand_callback_key=SECRET,
        )
    )
    panel_rows = [make_message(provider="panel", status=S.SENDING) for _ in range(3)]
    brand_rows = [make_message(provider="brand", status=S.SENDING) for _ in range(3)]
    async with httpx.AsyncClient(transport=mock_transport(sim, sleep=False)) as provider:
        outcomes = []
        for name, rows in (("panel", panel_rows), ("brand", brand_rows)):
            adapter = make_adapter(settings.providers[name], public_url=settings.public_url)
            outbound = Outbound("Your code is 1234", [Recipient(m.id, m.to) for m in rows])
            outcomes += await adapter.send(outbound, provider)
    assert all(isinstance(o, Accepted) for o in outcomes)

    # What the worker writes back; one panelsms row is left in "sending", as
    # when a report overtakes the worker.
    for outcome in outcomes:
        assert isinstance(outcome, Accepted)
        if outcome.message_id == panel_rows[0].id:
            continue
        message = session.get(Message, outcome.message_id)
        assert message is not None
        message.provider_message_id = outcome.provider_message_id
        apply_status(session, message, S.SENT, source=EventSource.WORKER)
    session.commit()

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as receiver:
        delivered = await DlrDispatcher(sim, receiver, backoff=0).dispatch_due()
    assert delivered == [True] * 12  # sent + delivered for each of 6 messages
    stats = sim.stats()["dlr"]
    assert (stats["pending"], stats["sent"], stats["failed"]) == (0, 12, 0)
    assert sum(stats["per_number"].values()) == 12
    assert drain() == 12
    for message in panel_rows + brand_rows:
        assert status_of(session, message) == S.DELIVERED
        dlr = [e for e in events_of(session, message) if e.source == EventSource.DLR]
        assert sorted(e.status for e in dlr) == [S.DELIVERED, S.SENT]
