"""send_batch with routes: the account is chosen when the message is sent.

The route ``both`` is ``[panel, brand]`` (the harness's two accounts, both
shown as ``SMSQ``). The simulator sits behind a transport that can refuse
connections or time out reads per account and counts the requests each
account received. Breakers are on fakeredis, as in test_sending_breaker.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import fakeredis
import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session

from models.status import MessageStatus
from models.tables import Message
from providers.base import Rejected
from providers.errors import TransportError
from providers.routes import Route
from providers.simulator import mock_transport
from worker.provider_health import BreakerSettings, BreakerState, ProviderHealth
from worker.routing import Router
from worker.sending import HELD_DETAIL, REROUTED_DETAIL, send_batch
from worker.throttle import pause_provider

S = MessageStatus
PATHS = {"/sendMtSms.php": "panel", "/brand/send": "brand"}
Stored = Callable[[str], dict[str, Any]]
Events = Callable[[str], list[dict[str, Any]]]


class Endpoints(httpx.AsyncBaseTransport):
    """The simulator behind per-account faults; counts requests per account."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.refuse: set[str] = set()
        self.time_out: set[str] = set()
        self.requests: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        account = PATHS[request.url.path]
        self.requests[account] += 1
        if account in self.refuse:
            raise httpx.ConnectError("connection refused", request=request)
        if account in self.time_out:
            raise httpx.ReadTimeout("read timed out", request=request)
        return await self.inner.handle_async_request(request)


class Routed:
    """The harness with routes, breakers on fakeredis and the fault switches."""

    def __init__(self, harness: Any, queued: Callable[..., list[Message]]) -> None:
        self.harness = harness
        self.queued = queued
        self.store = fakeredis.FakeRedis()
        self.settings = BreakerSettings(failures=5, min_answers=50, probe_interval=60)
        harness.ctx.health = lambda provider: ProviderHealth(self.store, provider, self.settings)
        harness.ctx.router = Router(
            {
                "both": Route(name="both", accounts=("panel", "brand")),
                "split": Route(name="split", accounts=("panel", "brand"), weights=(70, 30)),
            }
        )
        self.endpoints = Endpoints(mock_transport(harness.sim, sleep=False))
        harness.ctx.client = httpx.AsyncClient(transport=self.endpoints)

    def messages(self, n: int, route: str | None = "both", **fields: Any) -> list[str]:
        return [m.id for m in self.queued(n, route=route, provider="panel", **fields)]

    def open_breaker(self, provider: str) -> None:
        ProviderHealth(self.store, provider, self.settings).record(
            [Rejected("x", TransportError("refused"))] * self.settings.failures
        )

    def close_breakers(self) -> None:
        self.store.flushdb()

    async def send(self, ids: list[str], **options: Any) -> Any:
        self.harness.clock.advance(120)  # past every retry_at of the previous round
        return await send_batch(self.harness.ctx, ids, **options)


@pytest.fixture
async def routed(harness: Any, queued: Callable[..., list[Message]]) -> Any:
    routed = Routed(harness, queued)
    yield routed
    await harness.ctx.client.aclose()


def rows(session: Session, ids: list[str]) -> list[Message]:
    session.expire_all()
    return [m for m in (session.get(Message, i) for i in ids) if m is not None]


async def test_first_account_then_the_second_while_its_breaker_is_open_then_back(
    routed: Routed, session: Session
) -> None:
    where = []
    for down in (None, "panel", None):
        routed.close_breakers()
        if down:
            routed.open_breaker(down)
        ids = routed.messages(5)
        result = await routed.send(ids)
        assert result.claimed == 5 and result.written.sent == 5
        [provider] = {r.provider for r in rows(session, ids) if r.status == S.SENT}
        where.append(provider)
    assert where == ["panel", "brand", "panel"]


async def test_weights_split_seventy_thirty_and_all_on_one_while_the_other_holds(
    routed: Routed, session: Session
) -> None:
    def sent_metric(provider: str) -> float:
        labels = {"route": "split", "provider": provider, "status": "sent"}
        return REGISTRY.get_sample_value("smsq_route_messages_total", labels) or 0.0

    before = {p: sent_metric(p) for p in ("panel", "brand")}
    ids = routed.messages(100, route="split")
    await routed.send(ids)
    assert Counter(r.provider for r in rows(session, ids) if r.status == S.SENT) == {
        "panel": 70,
        "brand": 30,
    }
    assert {p: sent_metric(p) - before[p] for p in before} == {"panel": 70, "brand": 30}
    routed.open_breaker("brand")
    ids = routed.messages(100, route="split")
    await routed.send(ids)
    assert Counter(r.provider for r in rows(session, ids) if r.status == S.SENT) == {"panel": 100}
    assert routed.endpoints.requests["brand"] == 1  # the first batch's one request of 30


@pytest.mark.parametrize("second", ["breaker", "paused"])
async def test_a_route_with_every_account_down_is_not_claimed_but_republished(
    routed: Routed, session: Session, events: Events, second: str
) -> None:
    routed.open_breaker("panel")
    if second == "breaker":
        routed.open_breaker("brand")
    else:
        pause_provider(routed.harness.ctx.bucket("brand").client, "brand")
    ids = routed.messages(3, attempts=2)
    before = {i: len(events(i)) for i in ids}
    result = await routed.send(ids)
    assert (result.claimed, result.released) == (0, 3)
    assert all(r.status == S.QUEUED and r.attempts == 2 for r in rows(session, ids))
    assert {i: len(events(i)) for i in ids} == before  # not even claimed
    [(published, _queue, countdown)] = routed.harness.enqueued.calls
    assert sorted(published) == sorted(ids) and countdown is not None and countdown >= 10
    assert sum(routed.endpoints.requests.values()) == 0


async def test_a_route_held_only_by_pauses_is_counted_as_released_not_breaker_held(
    routed: Routed,
) -> None:
    def metric(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"provider": "panel"}) or 0.0

    for account in ("panel", "brand"):
        pause_provider(routed.harness.ctx.bucket(account).client, account)
    names = ("smsq_breaker_held_messages_total", "smsq_bucket_released_messages_total")
    before = [metric(n) for n in names]

    result = await routed.send(routed.messages(3))

    assert (result.claimed, result.released) == (0, 3)
    assert [metric(n) - b for n, b in zip(names, before, strict=True)] == [0, 3]


async def test_a_routed_row_is_claimed_while_one_account_of_its_route_holds(
    routed: Routed, session: Session
) -> None:
    """Unlike an unrouted row on the same account, which stays held."""
    routed.open_breaker("panel")
    routed_ids, plain_ids = routed.messages(2), routed.messages(2, route=None)
    result = await routed.send(routed_ids + plain_ids)
    assert (result.claimed, result.released) == (2, 2)
    assert [(r.status, r.provider) for r in rows(session, routed_ids)] == [(S.SENT, "brand")] * 2
    assert [(r.status, r.attempts) for r in rows(session, plain_ids)] == [(S.QUEUED, 0)] * 2
    [(published, _queue, _countdown)] = routed.harness.enqueued.calls
    assert sorted(published) == sorted(plain_ids)


async def test_refused_on_the_first_account_is_given_back_unsent_then_sent_on_the_second(
    routed: Routed, session: Session, events: Events
) -> None:
    routed.endpoints.refuse.add("panel")
    [id_] = routed.messages(1)
    result = await routed.send([id_])
    assert (result.claimed, result.released, result.written.retries) == (1, 1, [])
    [row] = rows(session, [id_])
    assert (row.status, row.attempts) == (S.QUEUED, 0)  # no attempt spent
    assert events(id_)[-1]["detail"] == REROUTED_DETAIL
    [(published, _queue, countdown)] = routed.harness.enqueued.calls
    assert published == [id_] and countdown is not None and countdown <= 2

    result = await routed.send([id_])
    [row] = rows(session, [id_])
    assert (row.status, row.provider, row.attempts) == (S.SENT, "brand", 1)
    assert routed.endpoints.requests["brand"] == 1


async def test_refused_on_both_accounts_falls_back_to_the_usual_retry(
    routed: Routed, session: Session
) -> None:
    """No endless swap: once the other account refused too, an attempt is spent."""
    routed.endpoints.refuse.update({"panel", "brand"})
    [id_] = routed.messages(1)
    await routed.send([id_])  # panel refuses: given back for brand
    await routed.send([id_])  # brand refuses, panel refused a moment ago
    [row] = rows(session, [id_])
    assert (row.status, row.provider, row.attempts) == (S.QUEUED, "brand", 1)
    assert "never reached" in (row.error_detail or "")


async def test_an_unrouted_row_refused_is_retried_on_its_account_as_before(
    routed: Routed, session: Session, events: Events
) -> None:
    routed.endpoints.refuse.add("panel")
    [id_] = routed.messages(1, route=None)
    result = await routed.send([id_])
    assert len(result.written.retries) == 1
    [row] = rows(session, [id_])
    assert (row.status, row.provider, row.attempts) == (S.QUEUED, "panel", 1)
    assert REROUTED_DETAIL not in [e["detail"] for e in events(id_)]
    assert routed.endpoints.requests["brand"] == 0


async def test_a_read_timeout_stays_unknown_on_its_account_never_sent_on_another(
    routed: Routed, session: Session
) -> None:
    routed.endpoints.time_out.add("panel")
    [id_] = routed.messages(1)
    await routed.send([id_])
    await routed.send([id_])  # an unknown row is not claimed again by a send
    [row] = rows(session, [id_])
    assert (row.status, row.provider) == (S.UNKNOWN, "panel")
    assert routed.endpoints.requests["brand"] == 0


async def test_the_resend_of_an_unknown_row_stays_on_the_account_that_may_have_it(
    routed: Routed, session: Session
) -> None:
    routed.harness.ctx.router = Router({"both": Route(name="both", accounts=("brand", "panel"))})
    [id_] = routed.messages(1, status=S.UNKNOWN)
    await routed.send([id_], resend_unknown=True)
    [row] = rows(session, [id_])
    assert (row.status, row.provider) == (S.SENT, "panel")
    assert routed.endpoints.requests == {"panel": 1}


async def test_when_the_probe_is_due_one_message_probes_the_rest_go_out_elsewhere(
    routed: Routed, session: Session
) -> None:
    routed.settings = BreakerSettings(failures=5, min_answers=50, probe_interval=0.05)
    routed.open_breaker("panel")
    await asyncio.sleep(0.1)  # the probe is due (Redis's clock: real time)
    ids = routed.messages(5)
    result = await routed.send(ids)
    assert (result.written.sent, result.released) == (5, 0)
    assert Counter(r.provider for r in rows(session, ids)) == {"panel": 1, "brand": 4}
    health = ProviderHealth(routed.store, "panel", routed.settings)
    assert health.state().state is BreakerState.CLOSED  # the probe answered


async def test_a_refused_probe_goes_to_another_account_of_its_route_not_held_for_the_next(
    routed: Routed, session: Session, events: Events
) -> None:
    """A message that was the probe of an account refusing connections is not
    held until that account's next probe (where it would be the probe again,
    forever, when it is the only message): it fails over like any refused one."""
    routed.settings = BreakerSettings(failures=5, min_answers=50, probe_interval=0.05)
    routed.open_breaker("panel")
    routed.endpoints.refuse.add("panel")
    await asyncio.sleep(0.1)  # panel's probe is due
    [id_] = routed.messages(1)
    result = await routed.send([id_])
    assert (result.claimed, result.released) == (1, 1)
    [row] = rows(session, [id_])
    assert (row.status, row.attempts) == (S.QUEUED, 0)
    assert events(id_)[-1]["detail"] == REROUTED_DETAIL
    [(published, _queue, countdown)] = routed.harness.enqueued.calls
    assert published == [id_] and countdown is not None and countdown <= 2
    probes = routed.endpoints.requests["panel"]  # the probe, with its in-call retries

    await asyncio.sleep(0.1)  # panel's next probe is due again
    await routed.send([id_])
    [row] = rows(session, [id_])
    assert (row.status, row.provider, row.attempts) == (S.SENT, "brand", 1)
    assert routed.endpoints.requests["panel"] == probes


async def test_rows_held_by_a_breaker_that_opened_after_the_claim_fail_over_in_a_second(
    routed: Routed, session: Session, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The breaker opened after the claim read it closed (another worker saw
    the failures): the routed rows go back for about a second, for the
    route's other account, not for the breaker's probe interval (60 s here);
    a row without a route in the same batch waits for the probe, as before."""
    monkeypatch.setattr("worker.sending._holding_accounts", lambda ctx, probing=None: {})
    routed.open_breaker("panel")
    ids = routed.messages(3)
    plain = routed.messages(2, route=None)
    result = await routed.send([*ids, *plain])
    assert (result.claimed, result.released, result.written.sent) == (5, 5, 0)
    countdowns = {
        frozenset(published): countdown
        for published, _queue, countdown in routed.harness.enqueued.calls
    }
    assert countdowns[frozenset(ids)] is not None and countdowns[frozenset(ids)] <= 2
    assert countdowns[frozenset(plain)] is not None and countdowns[frozenset(plain)] >= 50
    assert {events(i)[-1]["detail"] for i in ids} == {HELD_DETAIL}

    monkeypatch.undo()
    await routed.send(ids)
    assert {(r.status, r.provider) for r in rows(session, ids)} == {(S.SENT, "brand")}
    assert routed.endpoints.requests["panel"] == 0
