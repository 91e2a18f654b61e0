"""Delivery attempts against a real HTTP server in a thread.

These tests allow http and private targets (the server is on 127.0.0.1);
the SSRF guard itself is tested in tests/smsq/test_netguard.py, and one test
here checks it refuses the same server without those settings.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from models.db import make_sessionmaker
from models.tables import ApiKey, DisabledWebhookEndpoint, WebhookDelivery
from smsq.core.settings import Settings
from worker.webhooks.delivery import DeliveryContext, Outcome, WebhookConfig, deliver
from worker.webhooks.outbox import DeliveryStatus, new_delivery_id
from worker.webhooks.sender import make_client
from worker.webhooks.signing import verify

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PAYLOAD = '{"type":"message.status","data":{"id":"m-1","status":"delivered"}}'


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Endpoint:
    """A customer's webhook endpoint: answers scripted replies, records requests."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.received: list[Received] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                endpoint.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                reply = endpoint.replies.pop(0) if endpoint.replies else Reply()
                time.sleep(reply.delay)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/sms?token=abc"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    ep = Endpoint()
    yield ep
    ep.close()


@dataclass
class Clock:
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ctx(engine: Engine, clock: Clock) -> Iterator[DeliveryContext]:
    with make_client() as client:
        yield DeliveryContext(
            sessions=make_sessionmaker(engine),
            client=client,
            config=WebhookConfig(
                allow_http=True, allow_private=True, timeout=2.0, fallback_secret=SECRET
            ),
            clock=clock,
            rng=random.Random(7),
        )


def make_delivery(session: Session, url: str, clock: Clock, *, client_id: str = "") -> str:
    row = WebhookDelivery(
        id=new_delivery_id(),
        event_id=random.randrange(1, 2**31),
        message_id="m-1",
        client_id=client_id,
        url=url,
        payload=PAYLOAD,
        status=DeliveryStatus.PENDING,
        next_attempt_at=clock.now,
        created_at=clock.now,
    )
    session.add(row)
    session.commit()
    return row.id


def row_of(session: Session, delivery_id: str) -> WebhookDelivery:
    session.expire_all()
    row = session.get(WebhookDelivery, delivery_id)
    assert row is not None
    return row


def test_2xx_is_delivered_with_a_valid_signature(
    ctx: DeliveryContext, endpoint: Endpoint, session: Session, clock: Clock
) -> None:
    delivery_id = make_delivery(session, endpoint.url, clock)

    result = deliver(ctx, delivery_id)

    assert result.outcome is Outcome.DELIVERED
    [request] = endpoint.received
    assert request.path == "/hooks/sms?token=abc"
    assert request.body == PAYLOAD.encode()
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == delivery_id
    timestamp = int(request.headers["webhook-timestamp"])
    assert timestamp == int(clock.now.timestamp())
    assert verify(
        SECRET,
        request.headers["webhook-id"],
        timestamp,
        request.body,
        request.headers["webhook-signature"],
        now=int(time.time()),
    )
    row = row_of(session, delivery_id)
    assert (row.status, row.attempts, row.delivered_at) == ("delivered", 1, clock.now)
    # A duplicate task finds nothing to do.
    assert deliver(ctx, delivery_id).outcome is Outcome.SKIPPED
    assert len(endpoint.received) == 1


def test_the_api_keys_secret_signs_its_webhooks(
    ctx: DeliveryContext, endpoint: Endpoint, session: Session, clock: Clock
) -> None:
    key_secret = "whsec_" + "c2VjcmV0LWtleS1vZi10aGUtY2xpZW50"
    key = ApiKey(name="shop", prefix="shop0001", key_hash="0" * 64, webhook_secret=key_secret)
    session.add(key)
    session.commit()
    delivery_id = make_delivery(session, endpoint.url, clock, client_id=key.id)

    assert deliver(ctx, delivery_id).outcome is Outcome.DELIVERED

    [request] = endpoint.received
    args = (delivery_id, int(request.headers["webhook-timestamp"]), request.body)
    assert verify(key_secret, *args, request.headers["webhook-signature"])
    assert not verify(SECRET, *args, request.headers["webhook-signature"])


def test_the_connection_goes_to_the_checked_address_with_the_real_host_header(
    ctx: DeliveryContext, endpoint: Endpoint, session: Session, clock: Clock
) -> None:
    lookups: list[str] = []

    def resolver(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        lookups.append(host)
        return [(2, 1, 6, "", ("127.0.0.1", port))]

    ctx.resolver = resolver
    delivery_id = make_delivery(session, f"http://hooks.customer.test:{endpoint.port}/h", clock)

    assert deliver(ctx, delivery_id).outcome is Outcome.DELIVERED
    assert lookups == ["hooks.customer.test"]  # one lookup, ours
    assert endpoint.received[0].headers["host"] == f"hooks.customer.test:{endpoint.port}"


def test_500_is_retried_then_delivered_with_the_same_id_and_body(
    ctx: DeliveryContext, endpoint: Endpoint, session: Session, clock: Clock
) -> None:
    endpoint.replies = [Reply(500), Reply(200)]
    delivery_id = make_delivery(session, endpoint.url, clock)

    first = deliver(ctx, delivery_id)
    assert first.outcome is Outcome.RETRY and first.countdown is not None
    assert 0 <= first.countdown <= 5
    assert row_of(session, delivery_id).last_error == "HTTP 500"
    clock.advance(first.countdown + 0.001)
    second = deliver(ctx, delivery_id)

    assert second.outcome is Outcome.DELIVERED
    assert [r.headers["webhook-id"] for r in endpoint.received] == [delivery_id] * 2
    assert endpoint.received[0].body == endpoint.received[1].body
    row = row_of(session, delivery_id)
    assert (row.status, row.attempts, row.last_error) == ("delivered", 2, None)


def test_429_retry_after_is_a_floor(
    ctx: DeliveryContext, endpoint: Endpoint, session: Session, clock: Clock
) -> None:
    endpoint.replies = [Reply(429, {"Retry-After": "120"})]
    delivery_id = make_delivery(session, endpoint.url, clock)

    result = deliver(ctx, delivery_id)

    assert result.outcome is Outcome.RETRY
    assert result.countdown == 120
    clock.advance(60)
    assert deliver(ctx, delivery_id).outcome is Outcome.SKIPPED  # not due yet
    assert len(endpoint.received) == 1
    clock.advance(61)
    assert deliver(ctx, delivery_id).outcome is Outcome.DELIVERED


def test_410_disables_the_endpoint_and_its_pending_deliveries(
    ctx: DeliveryContext, endpoint: Endpoint, session: Session, clock: Clock
) -> None:
    endpoint.replies = [Reply(410)]
    delivery_id = make_delivery(session, endpoint.url, clock)
    waiting = make_delivery(session, endpoint.url, clock)

    assert deliver(ctx, delivery_id).outcome is Outcome.GONE

    assert row_of(session, delivery_id).status == "gone"
    assert row_of(session, waiting).status == "gone"
    assert session.scalars(select(DisabledWebhookEndpoint.url)).all() == [endpoint.url]
    assert deliver(ctx, waiting).outcome is Outcome.SKIPPED
    assert len(endpoint.received) == 1


@pytest.mark.parametrize("to_metadata", [True, False], ids=["to metadata", "to a local server"])
def test_a_redirect_is_not_followed(
    ctx: DeliveryContext, session: Session, clock: Clock, to_metadata: bool
) -> None:
    first, target = Endpoint(), Endpoint()
    try:
        location = "http://169.254.169.254/latest/meta-data/" if to_metadata else target.url
        first.replies = [Reply(302, {"Location": location})]
        delivery_id = make_delivery(session, first.url, clock)

        result = deliver(ctx, delivery_id)

        assert result.outcome is Outcome.FAILED
        assert "redirects are not followed" in result.detail
        assert len(first.received) == 1
        assert target.received == []
        assert row_of(session, delivery_id).status == "failed"
    finally:
        first.close()
        target.close()


def test_a_timeout_is_retried(
    ctx: DeliveryContext, endpoint: Endpoint, session: Session, clock: Clock
) -> None:
    ctx.config = WebhookConfig(
        allow_http=True, allow_private=True, timeout=0.2, fallback_secret=SECRET
    )
    endpoint.replies = [Reply(200, delay=1.0)]
    delivery_id = make_delivery(session, endpoint.url, clock)

    result = deliver(ctx, delivery_id)

    assert result.outcome is Outcome.RETRY
    assert "timeout" in result.detail
    assert row_of(session, delivery_id).status == "pending"


def test_a_refused_connection_is_retried(
    ctx: DeliveryContext, session: Session, clock: Clock
) -> None:
    gone = Endpoint()
    url = gone.url
    gone.close()
    result = deliver(ctx, make_delivery(session, url, clock))
    assert result.outcome is Outcome.RETRY
    assert "network error" in result.detail


def test_retries_end_after_the_retry_window(
    ctx: DeliveryContext, endpoint: Endpoint, session: Session, clock: Clock
) -> None:
    endpoint.replies = [Reply(503)] * 3
    delivery_id = make_delivery(session, endpoint.url, clock)
    assert deliver(ctx, delivery_id).outcome is Outcome.RETRY
    clock.advance(23 * 3600)
    assert deliver(ctx, delivery_id).outcome is Outcome.RETRY
    clock.advance(3600)  # 24 h after the delivery was made

    result = deliver(ctx, delivery_id)

    assert result.outcome is Outcome.FAILED
    assert "gave up after 3 attempts" in result.detail
    row = row_of(session, delivery_id)
    assert (row.status, row.attempts) == ("failed", 3)


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_other_4xx_fail_without_retry(
    ctx: DeliveryContext, endpoint: Endpoint, session: Session, clock: Clock, status: int
) -> None:
    endpoint.replies = [Reply(status)]
    delivery_id = make_delivery(session, endpoint.url, clock)
    result = deliver(ctx, delivery_id)
    assert (result.outcome, result.detail) == (Outcome.FAILED, f"HTTP {status}")


def test_a_private_target_is_refused_without_the_setting(
    ctx: DeliveryContext, endpoint: Endpoint, session: Session, clock: Clock
) -> None:
    ctx.config = WebhookConfig(allow_http=True, allow_private=False, fallback_secret=SECRET)
    delivery_id = make_delivery(session, endpoint.url, clock)

    result = deliver(ctx, delivery_id)

    assert result.outcome is Outcome.FAILED
    assert "loopback" in result.detail
    assert endpoint.received == []
    assert row_of(session, delivery_id).last_error == result.detail


def test_without_a_signing_secret_nothing_is_sent(
    ctx: DeliveryContext, endpoint: Endpoint, session: Session, clock: Clock
) -> None:
    ctx.config = WebhookConfig(allow_http=True, allow_private=True, fallback_secret=None)
    no_setting = make_delivery(session, endpoint.url, clock)
    unknown_client = make_delivery(session, endpoint.url, clock, client_id="no-such-key")

    for delivery_id in (no_setting, unknown_client):
        result = deliver(ctx, delivery_id)
        assert (result.outcome, result.detail) == (Outcome.FAILED, "no signing secret")
        assert row_of(session, delivery_id).last_error == "no signing secret"
    assert endpoint.received == []


def test_the_payload_is_sent_as_stored(
    ctx: DeliveryContext, endpoint: Endpoint, session: Session, clock: Clock
) -> None:
    deliver(ctx, make_delivery(session, endpoint.url, clock))
    assert json.loads(endpoint.received[0].body)["data"]["status"] == "delivered"


def test_https_connects_to_the_checked_address_with_the_hostname_for_tls(
    engine: Engine, session: Session, clock: Clock
) -> None:
    seen: list[httpx.Request] = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    def resolver(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        return [(2, 1, 6, "", ("93.184.215.14", port))]

    with httpx.Client(transport=httpx.MockTransport(endpoint)) as client:
        ctx = DeliveryContext(
            sessions=make_sessionmaker(engine),
            client=client,
            config=WebhookConfig(fallback_secret=SECRET),  # https only, public only
            clock=clock,
            resolver=resolver,
        )
        delivery_id = make_delivery(session, "https://Hooks.Customer.test/h?x=1", clock)
        assert deliver(ctx, delivery_id).outcome is Outcome.DELIVERED

    [request] = seen
    assert str(request.url) == "https://93.184.215.14/h?x=1"
    assert request.headers["host"] == "hooks.customer.test"
    assert request.extensions["sni_hostname"] == "hooks.customer.test"


def test_config_keeps_backoff_below_the_visibility_timeout() -> None:
    settings = Settings(visibility_timeout=600, webhook_secret=SECRET, webhook_allow_http=True)
    config = WebhookConfig.from_settings(settings)
    assert config.backoff.cap < 600
    assert config.fallback_secret == SECRET and config.allow_http
