"""What a web app and an operator see through the HTTP API, end to end.

The API runs as its own uvicorn process, workers and beat as Celery
processes, the simulator over HTTP; a customer's webhook endpoint is a small
HTTP server in this process that checks every signature.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from producer.keys import create_key

pytestmark = pytest.mark.integration

WEBHOOK_ENV = {"SMSQ_WEBHOOK_ALLOW_HTTP": "1", "SMSQ_WEBHOOK_ALLOW_PRIVATE": "1"}


@dataclass
class Hooks:
    """A customer's webhook endpoint: keeps what it received, checks signatures."""

    secret: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def statuses(self, message_id: str) -> list[str]:
        with self.lock:
            return [h["data"]["status"] for h in self.received if h["data"]["id"] == message_id]

    def check(self, headers: Any, body: bytes) -> bool:
        key = base64.b64decode(self.secret.removeprefix("whsec_"))
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
        expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        return any(hmac.compare_digest(expected, s) for s in headers["webhook-signature"].split())


@pytest.fixture
def hooks() -> Iterator[tuple[Hooks, str]]:
    state = Hooks()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            with state.lock:
                if state.check(self.headers, body):
                    state.received.append(json.loads(body))
                else:
                    state.bad_signatures += 1
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_port}/hooks/sms"
    server.shutdown()
    server.server_close()


@pytest.fixture
def api() -> Iterator[Callable[[Any, str], httpx.Client]]:
    """An HTTP client of the stack's API with a key (closed at the end)."""
    clients: list[httpx.Client] = []

    def make(stack: Any, key: str) -> httpx.Client:
        client = httpx.Client(
            base_url=stack.settings.public_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_a_web_app_sends_reads_status_and_gets_signed_webhooks(
    live: Callable[..., Any], hooks: tuple[Hooks, str], api: Callable[[Any, str], httpx.Client]
) -> None:
    state, hook_url = hooks
    stack = live(env=WEBHOOK_ENV)
    stack.worker("otp,transactional,webhooks", concurrency=2)
    stack.beat()
    with stack.sessions() as session:
        row, key = create_key(session, "shop", webhook_url=hook_url)
        state.secret = row.webhook_secret
    client = api(stack, key)

    first = client.post(
        "/v1/messages",
        json={"to": "+4917012345678", "text": "Your parcel is here", "kind": "transactional"},
        headers={"Idempotency-Key": "parcel-1"},
    )
    assert first.status_code == 202, first.text
    message = first.json()
    assert message["status"] == "queued" and message["segments"] == 1
    again = client.post(
        "/v1/messages",
        json={"to": "+4917012345678", "text": "Your parcel is here", "kind": "transactional"},
        headers={"Idempotency-Key": "parcel-1"},
    )
    assert again.status_code == 202 and again.json()["id"] == message["id"]
    batch = client.post(
        "/v1/messages", json={"to": ["+4917011111111", "+4917022222222"], "text": "Hi"}
    )
    assert batch.status_code == 202 and len(batch.json()) == 2

    stack.wait_until(stack.all_in("delivered", 3), 60, "3 delivered")
    view = client.get(f"/v1/messages/{message['id']}").json()
    assert view["status"] == "delivered" and view["attempts"] == 1
    assert [e["status"] for e in view["events"]][-1] == "delivered"
    assert "text" not in view
    stack.wait_until(
        lambda: "delivered" in state.statuses(message["id"]), 30, "the delivered webhook"
    )
    assert state.statuses(message["id"])[0] == "queued"
    assert state.bad_signatures == 0
    assert stack.sim.stats()["accepted"] == 3  # the repeated request sent nothing

    assert httpx.get(f"{stack.settings.public_url}/v1/messages/{message['id']}").status_code == 401
    assert httpx.get(f"{stack.settings.public_url}/readyz").json()["status"] == "ready"


def test_an_app_on_the_panelsms_api_only_changes_its_base_url(live: Callable[..., Any]) -> None:
    stack = live()
    stack.worker("otp,transactional", concurrency=1)
    with stack.sessions() as session:
        _row, key = create_key(session, "legacy-shop")
    # The vendor's own example request, pointed at smsq.
    answer = httpx.get(
        f"{stack.settings.public_url}/sendMtSms.php",
        params={
            "user": "legacy-shop",
            "apiKey": key,
            "to": "+14155552671",
            "message": "Hello World!",
            "senderId": "SHOP",
            "transactionId": "order-77",
        },
    )
    assert answer.status_code == 200 and answer.text.startswith("OK_"), answer.text
    message_id = answer.text.removeprefix("OK_")
    stack.wait_until(stack.all_in("delivered", 1), 30, "the drop-in message delivered")
    repeat = httpx.get(
        f"{stack.settings.public_url}/sendMtSms.php",
        params={
            "user": "legacy-shop",
            "apiKey": key,
            "to": "+14155552671",
            "message": "Hello World!",
            "transactionId": "order-77",
        },
    )
    assert repeat.text == f"OK_{message_id}"
    bad = httpx.get(
        f"{stack.settings.public_url}/sendMtSms.php",
        params={"user": "legacy-shop", "apiKey": key, "to": "12", "message": "x"},
    )
    assert bad.text == "ERROR_5"
    assert stack.sim.stats()["accepted"] == 1


def test_an_operator_uploads_a_csv_campaign_and_downloads_its_report(
    live: Callable[..., Any], api: Callable[[Any, str], httpx.Client]
) -> None:
    stack = live()
    stack.worker("campaign", concurrency=2)
    stack.worker("transactional", concurrency=1, name="maintenance")
    stack.beat()
    with stack.sessions() as session:
        _row, key = create_key(session, "ops")
    client = api(stack, key)
    assert client.post("/v1/stoplist", json={"numbers": ["+4915123000005"]}).status_code < 300

    rows = ["phone,name"] + [f"+4915123{i:06d},Ann {i}" for i in range(200)]
    rows[3] = "not-a-number,Bob"  # data row 3
    rows.insert(10, "")  # an empty row: data row 10
    rows.append("+4915123000001,Dup")  # a duplicate of data row 2
    upload = "\n".join(rows).encode() + "\n+4915123999999,Jos\xe9\n".encode("latin-1")
    answer = client.post(
        "/v1/campaigns",
        data={"name": "spring", "text": "Hi {name}, spring sale!", "phone_column": "phone"},
        files={"file": ("spring.csv", upload, "text/csv")},
    )
    assert answer.status_code == 202, answer.text
    receipt = answer.json()
    assert receipt["accepted"] == 199  # 200 numbers, one of them not a number; +1 stop-listed kept
    reasons = {e["row"]: e["reason"] for e in receipt["errors"]}
    assert set(reasons) == {3, 10, 202, 203}, receipt["errors"]
    assert "duplicate of row 2" in reasons[202]
    assert receipt["rejected"] == 4

    campaign = receipt["id"]
    stack.wait_until(
        lambda: client.get(f"/v1/campaigns/{campaign}").json()["status"] == "finished",
        90,
        "the campaign finished",
    )
    stack.wait_until(stack.all_in("delivered", 198), 30, "the delivery reports")
    summary = client.get(f"/v1/campaigns/{campaign}").json()
    assert summary["counts"].get("delivered") == 198 and summary["counts"].get("suppressed") == 1
    report = client.get(f"/v1/campaigns/{campaign}/report.csv")
    assert report.status_code == 200
    lines = list(csv.DictReader(io.StringIO(report.text)))
    assert len(lines) == 199
    assert {r["status"] for r in lines} == {"delivered", "suppressed"}
    assert stack.sim.stats()["accepted"] == 198
