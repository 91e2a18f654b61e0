"""The panelsms adapter against the simulator (through MockTransport)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from models.ids import new_id
from providers.accounts import PanelSmsAccount
from providers.base import Accepted, Outbound, Recipient, Rejected
from providers.codes import Code
from providers.errors import (
    OutcomeUnknown,
    PermanentError,
    ProviderProtocolError,
    ProviderUnavailable,
    QueueFull,
    Throttled,
)
from providers.panelsms.adapter import PanelSmsAdapter, concat_reference, parse_response
from providers.panelsms.protocol import concat_udh, render_answer
from providers.simulator import SimRequest, Simulator, mock_transport

PUBLIC = "https://smsq.example.com"
Factory = Callable[..., PanelSmsAccount]


def one(to: str = "+4917012345678", **kw: object) -> tuple[str, Outbound]:
    mid = new_id()
    return mid, Outbound(text=str(kw.pop("text", "Hello")), recipients=[Recipient(mid, to)], **kw)  # type: ignore[arg-type]


def last_params(sim: Simulator) -> dict[str, str]:
    request = sim.last_requests[-1]
    return dict(request["params"])


@pytest.mark.parametrize("response_type", ["json", "xml", "plain"])
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_send_in_every_format_and_method(
    sim: Simulator,
    client: httpx.AsyncClient,
    panel_account: Factory,
    response_type: str,
    method: str,
) -> None:
    adapter = PanelSmsAdapter(
        panel_account(response_type=response_type, method=method), public_url=PUBLIC
    )
    mid, outbound = one(validity=3600)
    [outcome] = await adapter.send(outbound, client)
    assert outcome == Accepted(mid, mid)  # the transactionId is our id
    params = last_params(sim)
    assert params["transactionId"] == mid
    assert params["senderId"] == "SMSQ"
    assert params["dcs"] == "1"
    assert params["confirmation"] == "true"
    assert params["callbackUrl"] == f"{PUBLIC}/dlr/panelsms"
    assert params["validityPeriod"] == "3600"
    assert params["apiKey"] != "" and "udh" not in params
    assert (params.get("responseType") or "plain") == response_type
    assert sim.stats()["per_transaction"] == {mid: 1}


async def test_special_characters_arrive_intact(
    sim: Simulator, client: httpx.AsyncClient, panel_account: Factory
) -> None:
    text = "Tom & Jerry: 1+1=2? #win á é 😀"
    adapter = PanelSmsAdapter(panel_account(method="GET"), public_url=PUBLIC)
    _, outbound = one(text=text)
    [outcome] = await adapter.send(outbound, client)
    assert isinstance(outcome, Accepted)
    params = last_params(sim)
    assert params["message"] == text
    assert params["to"] == "+4917012345678"
    assert params["dcs"] == "8"  # emoji and á force UCS-2


async def test_long_text_goes_as_parts_with_one_reference(
    sim: Simulator, client: httpx.AsyncClient, panel_account: Factory
) -> None:
    adapter = PanelSmsAdapter(panel_account(), public_url=PUBLIC)
    mid, outbound = one(text="x" * 400)  # 3 parts of <= 153 septets
    [outcome] = await adapter.send(outbound, client)
    assert isinstance(outcome, Accepted)
    udhs = [r["params"]["udh"] for r in sim.last_requests]
    ref = concat_reference(mid)
    assert udhs == [concat_udh(ref, 3, 1), concat_udh(ref, 3, 2), concat_udh(ref, 3, 3)]
    assert "".join(r["params"]["message"] for r in sim.last_requests) == "x" * 400
    assert sim.stats()["accepted"] == 3 and sim.stats()["duplicates"] == []


async def test_flash_single_part(
    sim: Simulator, client: httpx.AsyncClient, panel_account: Factory
) -> None:
    adapter = PanelSmsAdapter(panel_account(), public_url=PUBLIC)
    _, outbound = one(flash=True)
    await adapter.send(outbound, client)
    assert last_params(sim)["udh"] == "0100"


async def test_a_failed_part_resumes_without_resending_earlier_parts(
    sim: Simulator, panel_account: Factory
) -> None:
    inner = mock_transport(sim, sleep=False)
    failed_once = False

    async def handler(request: httpx.Request) -> httpx.Response:
        """Answer 'queue full' the first time part 2 of 3 arrives."""
        nonlocal failed_once
        if not failed_once and json.loads(request.content).get("udh", "").endswith("0302"):
            failed_once = True
            return httpx.Response(
                200,
                json={"response": {"status": "ERROR", "code": 6}},
                headers={"Retry-After": "2"},
            )
        return await inner.handle_async_request(request)

    adapter = PanelSmsAdapter(panel_account(), public_url=PUBLIC)
    mid, outbound = one(text="y" * 400)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        [first] = await adapter.send(outbound, client)
        assert isinstance(first, Rejected) and isinstance(first.error, QueueFull)
        assert first.parts_sent == 1 and first.error.retry_after == 2.0
        resume = Outbound(
            text=outbound.text, recipients=[Recipient(mid, "+4917012345678", first_part=2)]
        )
        [second] = await adapter.send(resume, client)
    assert isinstance(second, Accepted)
    assert sim.stats()["accepted"] == 3 and sim.stats()["duplicates"] == []


async def test_roaming_is_success_with_a_note(
    client: httpx.AsyncClient, sim: Simulator, panel_account: Factory
) -> None:
    sim.config.patch({"roaming_prefixes": ["4917"]})
    adapter = PanelSmsAdapter(panel_account(), public_url=PUBLIC)
    mid, outbound = one()
    [outcome] = await adapter.send(outbound, client)
    assert isinstance(outcome, Accepted)
    assert outcome.provider_code == Code.ROAMING and outcome.provider_message_id == mid


@pytest.mark.parametrize(
    ("setup", "account", "to", "error", "code"),
    [
        ({"disabled_users": ["demo@example.com"]}, {}, "+4917012345678", PermanentError, 1),
        ({}, {"api_key": "wrong"}, "+4917012345678", PermanentError, 2),
        ({}, {"sender": "THIS-IS-TOO-LONG"}, "+4917012345678", PermanentError, 4),
        ({}, {}, "+12", PermanentError, 5),
        ({"queue_full_ratio": 1.0}, {}, "+4917012345678", QueueFull, 6),
        ({"credit": 0}, {}, "+4917012345678", PermanentError, 9),
        ({"barred_prefixes": ["4917"]}, {}, "+4917012345678", PermanentError, 11),
    ],
)
@pytest.mark.parametrize("response_type", ["json", "xml", "plain"])
async def test_error_codes_are_mapped(
    sim: Simulator,
    client: httpx.AsyncClient,
    panel_account: Factory,
    setup: dict[str, object],
    account: dict[str, object],
    to: str,
    error: type[Exception],
    code: int,
    response_type: str,
) -> None:
    if setup:
        sim.config.patch(setup)
    adapter = PanelSmsAdapter(
        panel_account(response_type=response_type, **account), public_url=PUBLIC
    )
    mid, outbound = one(to=to)
    [outcome] = await adapter.send(outbound, client)
    assert isinstance(outcome, Rejected) and outcome.message_id == mid
    assert isinstance(outcome.error, error)
    assert outcome.error.code == code
    assert "demo-panel-key" not in str(outcome.error) and "wrong" not in str(outcome.error)


async def test_throttled_above_the_rate_limit(
    sim: Simulator, client: httpx.AsyncClient, panel_account: Factory
) -> None:
    sim.config.patch({"rate_limit": 1})
    adapter = PanelSmsAdapter(panel_account(), public_url=PUBLIC)
    recipients = [Recipient(new_id(), "+4917012345678") for _ in range(2)]
    outcomes = await adapter.send(Outbound(text="hi", recipients=recipients), client)
    errors = [o.error for o in outcomes if isinstance(o, Rejected)]
    assert len(errors) == 1  # one per clock second gets through (sim clock is frozen)
    assert isinstance(errors[0], Throttled) and errors[0].code == 7
    assert errors[0].retry_after == 1.0


@pytest.mark.parametrize("code", [c for c in Code if c not in (Code.ROAMING,)])
@pytest.mark.parametrize("response_type", ["json", "xml", ""])
def test_every_vendor_code_parses_in_every_format(code: int, response_type: str) -> None:
    """Each code as the simulator and the drop-in render it, read back by the adapter."""
    rendered = render_answer(response_type, code=code)
    response = httpx.Response(rendered.status, headers=rendered.headers, content=rendered.body)
    with pytest.raises(Exception) as info:
        parse_response(response, "m-1")
    assert getattr(info.value, "code", None) == code


async def test_http_failures(
    sim: Simulator, client: httpx.AsyncClient, panel_account: Factory
) -> None:
    adapter = PanelSmsAdapter(panel_account(), public_url=PUBLIC)
    sim.config.patch({"error_5xx_ratio": 1.0})
    [outcome] = await adapter.send(one()[1], client)
    assert isinstance(outcome, Rejected) and isinstance(outcome.error, ProviderUnavailable)
    sim.config.patch({"error_5xx_ratio": 0.0, "outages": [[0, 1e12]]})
    [outcome] = await adapter.send(one()[1], client)
    assert isinstance(outcome, Rejected) and isinstance(outcome.error, QueueFull)  # bare 503
    sim.config.patch({"outages": [], "hang_ratio": 1.0})
    [outcome] = await adapter.send(one()[1], client)
    assert isinstance(outcome, Rejected) and isinstance(outcome.error, OutcomeUnknown)


@pytest.mark.parametrize(
    "body",
    [
        "<html>Bad Gateway</html>",
        '{"response": 3}',
        "OK",
        "surprise",
        "",
        "ERROR_x",
        "<response><status>MAYBE</status></response>",
    ],
)
def test_a_garbage_answer_is_a_protocol_error(body: str) -> None:
    with pytest.raises(ProviderProtocolError, match="unreadable panelsms answer") as info:
        parse_response(httpx.Response(200, text=body), "m-1")
    assert info.value.received == body.strip()[:200]


async def test_many_recipients_go_concurrently(
    sim: Simulator, client: httpx.AsyncClient, panel_account: Factory
) -> None:
    adapter = PanelSmsAdapter(panel_account(), public_url=PUBLIC)
    recipients = [Recipient(new_id(), f"+49170{i:07d}") for i in range(50)]
    outcomes = await adapter.send(Outbound(text="hi", recipients=recipients), client)
    assert [o.message_id for o in outcomes] == [r.message_id for r in recipients]
    assert all(isinstance(o, Accepted) for o in outcomes)
    assert sim.stats()["accepted"] == 50


def test_request_shape_matches_the_vendor_example() -> None:
    """The simulator answers the request the adapter builds exactly as the vendor documents."""
    sim = Simulator()
    adapter = PanelSmsAdapter(
        PanelSmsAccount(
            adapter="panelsms",
            url="http://x/sendMtSms.php",
            user="demo@example.com",
            api_key="demo-panel-key",
        ),
        public_url=PUBLIC,
    )
    [params] = adapter.requests_for(
        Outbound(text="Hello", recipients=[Recipient("1234569", "+1222333444")]),
        Recipient("1234569", "+1222333444"),
    )
    answer = sim.handle(SimRequest("GET", "/sendMtSms.php", query=params))
    assert answer.json() == {"response": {"status": "OK", "transactionId": "1234569"}}
