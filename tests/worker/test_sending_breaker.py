"""send_batch against a dead provider, with the circuit breaker (worker.provider_health).

The simulator answers a bare HTTP 503 (its ``outages``) or the connection is
refused (a transport in front of it raises ``httpx.ConnectError``). Batches
are sent over and over, as the re-enqueued tasks would, for a couple of
seconds of real time (the breaker runs on Redis's clock; the rows' clock is
advanced past every ``retry_at`` on each round). What must hold: nothing
fails, no attempt is spent on the outage, about one request per probe
interval reaches the dead endpoint, and sending resumes within a few probe
intervals once it is back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import fakeredis
import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.status import MessageStatus
from models.tables import Message, MessageEvent
from providers.base import Rejected
from providers.errors import TransportError
from providers.request import IN_CALL_ATTEMPTS
from providers.simulator import mock_transport
from worker.provider_health import BreakerSettings, BreakerState, ProviderHealth
from worker.sending import HELD_DETAIL, send_batch

S = MessageStatus
PROBE = 0.25  # seconds between probes
OUTAGE = 2.0  # seconds of real time the provider is down


class Endpoint(httpx.AsyncBaseTransport):
    """The simulator behind a switch that can refuse connections; counts requests."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.refuse = False
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.refuse:
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


async def _round(harness: Any, ids: list[str]) -> None:
    harness.clock.advance(120)  # past every retry_at the previous round set
    await send_batch(harness.ctx, ids)


@pytest.mark.parametrize("fault", ["bare_503", "connection_refused"])
async def test_an_outage_fails_nothing_spends_no_attempt_and_probes_slowly(
    harness: Any, queued: Callable[..., list[Message]], session: Session, fault: str
) -> None:
    store = fakeredis.FakeRedis()
    settings = BreakerSettings(failures=3, min_answers=5, probe_interval=PROBE)
    harness.ctx.health = lambda provider: ProviderHealth(store, provider, settings)
    endpoint = Endpoint(mock_transport(harness.sim, sleep=False))
    messages = queued(40)
    ids = [m.id for m in messages]

    def down(on: bool) -> None:
        if fault == "connection_refused":
            endpoint.refuse = on
        else:
            span = [[time.time() - 1, time.time() + 3600]] if on else []
            harness.sim.config.patch({"outages": span})

    down(True)
    async with httpx.AsyncClient(transport=endpoint) as client:
        harness.ctx.client = client
        await _round(harness, ids)  # every request of the first chunk was already out
        health = ProviderHealth(store, "panel", settings)
        assert health.state().state is BreakerState.OPEN
        first = endpoint.requests
        started = time.monotonic()
        while time.monotonic() - started < OUTAGE:
            await _round(harness, ids)
            await asyncio.sleep(0.02)
        during = endpoint.requests - first
        probes = OUTAGE / PROBE + 1
        per_probe = IN_CALL_ATTEMPTS if fault == "connection_refused" else 1
        assert 1 <= during <= probes * per_probe, during

        session.expire_all()
        rows = [session.get(Message, i) for i in ids]
        assert all(r is not None and r.status == S.QUEUED and r.attempts == 0 for r in rows)

        down(False)
        back = time.monotonic()
        while time.monotonic() - back < 5 * PROBE + 1:
            await _round(harness, ids)
            session.expire_all()
            if all(session.get(Message, i).status == S.SENT for i in ids):  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.02)
        resumed = time.monotonic() - back

    session.expire_all()
    rows = [session.get(Message, i) for i in ids]
    assert [r.status for r in rows if r is not None] == [S.SENT] * len(ids)
    assert all(r is not None and r.attempts == 1 for r in rows)  # the outage cost nothing
    assert resumed <= 2 * PROBE + 0.5
    assert health.state().state is BreakerState.CLOSED


async def test_messages_in_flight_when_it_opens_are_given_back_not_failed(
    harness: Any, queued: Callable[..., list[Message]], session: Session
) -> None:
    """At the attempt cap (the harness allows 5), the outage that opened the breaker
    would have failed them; given back, they keep their attempts and wait."""
    store = fakeredis.FakeRedis()
    settings = BreakerSettings(failures=3, min_answers=5, probe_interval=60)
    harness.ctx.health = lambda provider: ProviderHealth(store, provider, settings)
    harness.sim.config.patch({"outages": [[time.time() - 1, time.time() + 3600]]})
    messages = queued(10, attempts=4)
    result = await send_batch(harness.ctx, [m.id for m in messages])
    assert result.written.failed == 0 and result.released == 10
    session.expire_all()
    rows = [session.get(Message, m.id) for m in messages]
    assert all(r is not None and r.status == S.QUEUED and r.attempts == 4 for r in rows)
    details = session.scalars(
        select(MessageEvent.detail).where(MessageEvent.message_id == messages[0].id)
    ).all()
    assert HELD_DETAIL in details
    [(ids, _queue, countdown)] = harness.enqueued.calls
    assert sorted(ids) == sorted(m.id for m in messages) and countdown is not None


async def test_while_it_holds_an_account_its_rows_are_not_even_claimed(
    harness: Any, queued: Callable[..., list[Message]], session: Session
) -> None:
    """Held rows stay ``queued`` with no event and no attempt; only a wake-up
    for when the probe is due is published."""
    store = fakeredis.FakeRedis()
    settings = BreakerSettings(failures=3, min_answers=5, probe_interval=60)
    ProviderHealth(store, "panel", settings).record([Rejected("x", TransportError("refused"))] * 3)
    harness.ctx.health = lambda provider: ProviderHealth(store, provider, settings)
    messages = queued(5, attempts=2)
    events_before = _events(session)
    result = await send_batch(harness.ctx, [m.id for m in messages])
    assert (result.claimed, result.released) == (0, 5)
    assert _events(session) == events_before
    session.expire_all()
    rows = [session.get(Message, m.id) for m in messages]
    assert all(r is not None and r.status == S.QUEUED and r.attempts == 2 for r in rows)
    [(ids, _queue, countdown)] = harness.enqueued.calls
    assert sorted(ids) == sorted(m.id for m in messages)
    assert countdown is not None and 55 < countdown <= 61


def _events(session: Session) -> int:
    return len(session.scalars(select(MessageEvent.id)).all())


async def test_without_a_breaker_the_sender_behaves_as_before(
    harness: Any, queued: Callable[..., list[Message]], session: Session
) -> None:
    harness.sim.config.patch({"outages": [[time.time() - 1, time.time() + 3600]]})
    [message] = queued(1, attempts=4)
    await send_batch(harness.ctx, [message.id])
    session.expire_all()
    row = session.get(Message, message.id)
    assert row is not None and row.status == S.FAILED and row.attempts == 5
