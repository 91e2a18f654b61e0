from __future__ import annotations

import socket

import httpx
import pytest

from providers.errors import OutcomeUnknown, TransportError
from providers.request import retry_after, send_request, vendor_encode


def test_vendor_encoding_table() -> None:
    # The panelsms document's table: space %20, + %2B, & %26, = %3D, ? %3F, # %23, á %C3%A1.
    assert vendor_encode({"m": "a b+c&d=e?f#g á é"}) == (
        "m=a%20b%2Bc%26d%3De%3Ff%23g%20%C3%A1%20%C3%A9"
    )
    assert vendor_encode({"to": "+1222333444"}) == "to=%2B1222333444"
    assert vendor_encode({"m": "😀"}) == "m=%F0%9F%98%80"


async def test_query_and_form_use_the_vendor_encoding() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="OK_1")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        await send_request(client, "GET", "http://p/s.php", query={"message": "a b&c"})
        await send_request(client, "POST", "http://p/b", form={"text": "a b+c"})
    assert seen[0].url.query == b"message=a%20b%26c"
    assert seen[1].content == b"text=a%20b%2Bc"
    assert seen[1].headers["content-type"] == "application/x-www-form-urlencoded"


async def test_the_transport_gets_the_client_s_headers_timeout_and_a_read_body() -> None:
    """The request skips the client's layers, not what the client is set up with."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler),
        headers={"User-Agent": "smsq-test"},
        timeout=httpx.Timeout(7.0, connect=2.0),
    ) as client:
        default = await send_request(client, "POST", "http://p/b", json={"a": "b"})
        short = await send_request(client, "GET", "http://p/s", query={"x": "1"}, timeout=3)

    assert default.json() == {"ok": True} and default.is_closed
    assert seen[0].headers["user-agent"] == "smsq-test"
    assert seen[0].headers["content-type"] == "application/json"
    assert seen[0].extensions["timeout"] == {"connect": 2.0, "read": 7.0, "write": 7.0, "pool": 7.0}
    assert seen[1].extensions["timeout"]["read"] == 3
    assert short.status_code == 200


async def test_a_proxy_mounted_on_the_client_still_carries_the_request() -> None:
    direct: list[str] = []
    proxied: list[str] = []

    def record(into: list[str]) -> httpx.MockTransport:
        return httpx.MockTransport(lambda r: into.append(str(r.url)) or httpx.Response(200))

    async with httpx.AsyncClient(
        transport=record(direct), mounts={"http://proxied": record(proxied)}
    ) as client:
        await send_request(client, "GET", "http://proxied/s")
        await send_request(client, "GET", "http://other/s")
    assert proxied == ["http://proxied/s"] and direct == ["http://other/s"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connection_refused_is_retried_then_a_transport_error() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(TransportError, match="never reached the provider after 3 attempts"):
            await send_request(client, "POST", "http://p/x", json={"a": "b"})
    assert calls == 3


async def test_a_request_that_never_left_then_succeeds() -> None:
    answers = iter([httpx.PoolTimeout("busy"), httpx.Response(200, text="OK_7")])

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        response = await send_request(client, "POST", "http://p/x", json={})
    assert response.text == "OK_7"


@pytest.mark.integration
async def test_a_real_refused_port_is_a_transport_error() -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(TransportError):
            await send_request(client, "GET", f"http://127.0.0.1:{_closed_port()}/x")


@pytest.mark.parametrize(
    "error",
    [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("dropped"), httpx.WriteTimeout("w")],
)
async def test_no_answer_is_outcome_unknown_and_not_retried(error: Exception) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise error

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(OutcomeUnknown):
            await send_request(client, "POST", "http://p/x", json={})
    assert calls == 1  # never resent blindly: the SMS may have gone out


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("3", 3.0), ("garbage", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_retry_after(header: str | None, expected: float | None) -> None:
    headers = {"Retry-After": header} if header else {}
    assert retry_after(httpx.Response(429, headers=headers)) == expected
