"""The brand adapter against the simulator (through MockTransport)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import httpx
import pytest

from models.ids import new_id
from providers.accounts import BrandAccount
from providers.base import Accepted, Outbound, Recipient, Rejected
from providers.brand.adapter import BrandAdapter, parse_response
from providers.errors import (
    OutcomeUnknown,
    PermanentError,
    ProviderProtocolError,
    ProviderUnavailable,
    QueueFull,
    Throttled,
)
from providers.simulator import Simulator

Factory = Callable[..., BrandAccount]


def recipients(n: int) -> list[Recipient]:
    return [Recipient(new_id(), f"+49170{i:07d}") for i in range(n)]


async def test_one_request_carries_many_numbers(
    sim: Simulator, client: httpx.AsyncClient, brand_account: Factory
) -> None:
    adapter = BrandAdapter(brand_account())
    rs = recipients(3)
    outcomes = await adapter.send(Outbound(text="Hi 😀 & more", recipients=rs), client)
    assert [o.message_id for o in outcomes] == [r.message_id for r in rs]
    assert all(isinstance(o, Accepted) for o in outcomes)
    ids = {o.provider_message_id for o in outcomes if isinstance(o, Accepted)}
    assert len(ids) == 3  # one smsID per number
    [request] = sim.last_requests
    params = request["params"]
    assert params["numbers"] == "491700000000,491700000001,491700000002"  # no '+' or '00'
    assert params["text"] == "Hi 😀 & more"
    assert params["brandID"] == "SMSQ"
    assert "stopList" not in params and "otp" not in params and "sendTime" not in params


async def test_more_than_max_numbers_is_split(
    sim: Simulator, client: httpx.AsyncClient, brand_account: Factory
) -> None:
    adapter = BrandAdapter(brand_account(max_numbers=500))
    rs = recipients(1200)
    outcomes = await adapter.send(Outbound(text="sale", recipients=rs), client)
    assert all(isinstance(o, Accepted) for o in outcomes)
    assert [o.message_id for o in outcomes] == [r.message_id for r in rs]
    assert sim.stats()["requests"]["total"] == 3
    assert sim.stats()["accepted"] == 1200


async def test_otp_stop_list_and_send_time(
    sim: Simulator, client: httpx.AsyncClient, brand_account: Factory
) -> None:
    adapter = BrandAdapter(brand_account())
    when = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(days=1)
    outbound = Outbound(
        text="Your code is 123456",
        recipients=recipients(1),
        otp=True,
        stop_list=False,
        send_time=when.astimezone(dt.timezone(dt.timedelta(hours=2))),
    )
    [outcome] = await adapter.send(outbound, client)
    assert isinstance(outcome, Accepted)
    params = sim.last_requests[-1]["params"]
    assert params["otp"] == "true" and params["stopList"] == "false"
    assert params["sendTime"] == when.strftime("%Y-%m-%d %H:%M")  # in UTC


@pytest.mark.parametrize(
    ("setup", "account", "to", "error", "code"),
    [
        ({}, {"key": "wrong"}, "+4917012345678", PermanentError, 2),
        ({}, {"brand_id": "OTHER"}, "+4917012345678", PermanentError, 1),
        ({}, {}, "+12", PermanentError, 5),
        ({"queue_full_ratio": 1.0}, {}, "+4917012345678", QueueFull, 6),
        ({"credit": 0}, {}, "+4917012345678", PermanentError, 9),
    ],
)
async def test_error_codes_are_mapped(
    sim: Simulator,
    client: httpx.AsyncClient,
    brand_account: Factory,
    setup: dict[str, object],
    account: dict[str, object],
    to: str,
    error: type[Exception],
    code: int,
) -> None:
    if setup:
        sim.config.patch(setup)
    adapter = BrandAdapter(brand_account(**account))
    mid = new_id()
    [outcome] = await adapter.send(Outbound(text="hi", recipients=[Recipient(mid, to)]), client)
    assert isinstance(outcome, Rejected) and outcome.message_id == mid
    assert isinstance(outcome.error, error) and outcome.error.code == code
    assert "demo-brand-key" not in str(outcome.error)


async def test_throttled_is_429_with_retry_after(
    sim: Simulator, client: httpx.AsyncClient, brand_account: Factory
) -> None:
    sim.config.patch({"rate_limit": 2, "retry_after": 3})
    adapter = BrandAdapter(brand_account())
    outcomes = await adapter.send(Outbound(text="hi", recipients=recipients(3)), client)
    assert all(isinstance(o, Rejected) for o in outcomes)  # 3 numbers > 2 per second
    error = outcomes[0].error  # type: ignore[union-attr]
    assert isinstance(error, Throttled) and error.retry_after == 3.0


async def test_http_failures(
    sim: Simulator, client: httpx.AsyncClient, brand_account: Factory
) -> None:
    adapter = BrandAdapter(brand_account())
    sim.config.patch({"error_5xx_ratio": 1.0})
    [o] = await adapter.send(Outbound(text="hi", recipients=recipients(1)), client)
    assert isinstance(o, Rejected) and isinstance(o.error, ProviderUnavailable)
    sim.config.patch({"error_5xx_ratio": 0.0, "outages": [[0, 1e12]]})
    [o] = await adapter.send(Outbound(text="hi", recipients=recipients(1)), client)
    assert isinstance(o, Rejected) and isinstance(o.error, QueueFull)
    sim.config.patch({"outages": [], "hang_ratio": 1.0})
    [o] = await adapter.send(Outbound(text="hi", recipients=recipients(1)), client)
    assert isinstance(o, Rejected) and isinstance(o.error, OutcomeUnknown)


@pytest.mark.parametrize(
    ("status", "headers", "error", "retry"),
    [
        (429, {}, Throttled, None),
        (429, {"Retry-After": "5"}, Throttled, 5.0),
        (503, {}, QueueFull, None),
        (401, {}, PermanentError, None),
        (502, {}, ProviderUnavailable, None),
    ],
)
def test_bare_http_statuses(
    status: int, headers: dict[str, str], error: type[Exception], retry: float | None
) -> None:
    with pytest.raises(error) as info:
        parse_response(httpx.Response(status, headers=headers, text="nope"), ["4917"])
    assert getattr(info.value, "retry_after", None) == retry


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        '{"status": "OK"}',
        '{"status": "OK", "messages": [{"number": "1", "smsID": "a"}]}',  # wrong number
        '{"status": "OK", "messages": [{"number": "4917", "smsID": "a"}, {"number": "4918"}]}',
        '{"status": "ERROR", "code": "x"}',
        "[]",
    ],
)
def test_a_garbage_answer_is_a_protocol_error(body: str) -> None:
    with pytest.raises(ProviderProtocolError):
        parse_response(httpx.Response(200, text=body), ["4917"])
