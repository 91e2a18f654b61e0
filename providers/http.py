"""The pooled ``httpx.AsyncClient`` the provider adapters send through.

Transport: aiohttp by default
-----------------------------
Adapters keep the httpx API (``await client.post(...)``); only the transport
underneath changes. ``bench/transport.py`` on the 2-core dev box, local
endpoint answering in 20 ms, form-encoded POSTs, median of 3 x 1,000
(ratio to the default transport in the same run):

=================================  ============  =============  =============
requests/s                          c=10          c=50           c=100
=================================  ============  =============  =============
httpx default (httpcore/anyio)       340           133            114
httpx + httpx-aiohttp transport      378 (1.1x)  1,131 (8.5x)   1,093 (9.6x)
this module, transport="aiohttp"     374 (1.1x)  1,198 (9.0x)   1,025 (9.0x)
sync httpx.Client, 32 threads        406 (1.2x)    458 (3.4x)     449 (3.9x)
=================================  ============  =============  =============

Every async transport is CPU-bound in the client (the endpoint used ~10 % of a
core). httpcore's pool gets *slower* as concurrency grows (it rescans every
connection for every queued request) and, without ``sniffio`` installed,
re-attempts a failed ``import sniffio`` per request; with sniffio it still
only reached ~400/190/145. aiohttp's C parser and connector cost ~0.9 ms of
CPU per request including httpx's own request/response handling, so one
worker process sustains ~1,000 sends/s; the wrapper below costs nothing
measurable. ``transport="httpx"`` stays available as a fallback.

Exceptions are the same for both transports
-------------------------------------------
:mod:`providers.request` retries ``httpx.ConnectError`` / ``ConnectTimeout`` /
``PoolTimeout`` at once ("the request never left") and turns every other
``httpx.TransportError`` into ``OutcomeUnknown``. httpx-aiohttp 0.2.0's own
mapping breaks that contract: it maps the aiohttp base class
``ClientConnectionError`` to ``httpx.ConnectTimeout``, so a server that drops
the connection *after* reading the request (``ServerDisconnectedError``) or
resets it (``ClientOSError``) surfaces as ``ConnectTimeout`` -- and would be
resent, duplicating the SMS. A malformed answer escapes as a raw
``aiohttp.ClientResponseError`` (not an httpx exception at all), refusals come
out as ``ConnectTimeout`` and pool exhaustion as ``ConnectTimeout`` too.
:class:`SmsqAiohttpTransport` wraps it and re-maps from the original aiohttp
exception so both transports raise what httpx's own transport raises:

=====================================  ===========================
connection refused / DNS / TLS         ``httpx.ConnectError``
connect timed out                      ``httpx.ConnectTimeout``
no pooled connection free in time      ``httpx.PoolTimeout``
no answer within the read timeout      ``httpx.ReadTimeout``
closed without answer / body cut       ``httpx.RemoteProtocolError``
unparseable status line or headers     ``httpx.RemoteProtocolError``
reset by peer                          ``httpx.ReadError``
=====================================  ===========================

The pool limit is enforced by a semaphore in front of aiohttp's connector
(aiohttp reports a full pool as a connect timeout), so ``PoolTimeout`` is
raised only for a pool wait and aiohttp's connect budget is the connect
timeout alone. aiohttp has no write timeout; ``Timeout.write`` is ignored.

One pooled client per worker process
------------------------------------
Call :func:`make_async_client` once per worker process, *after* the fork
(e.g. in Celery's ``worker_process_init``), never at import time: sockets and
the aiohttp session must not be shared across processes. The client belongs
to the event loop that first uses it; keep that loop for the process's life
and ``await client.aclose()`` on shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Literal

import aiohttp
import httpx
from aiohttp import ClientSession
from httpx_aiohttp import AiohttpTransport

TransportName = Literal["aiohttp", "httpx"]

DEFAULT_TRANSPORT: TransportName = "aiohttp"
CONNECT_TIMEOUT = 5.0
# Idle connections are dropped sooner than servers commonly close them (uvicorn
# 5 s, nginx 75 s): a request sent on a connection the server is closing at
# that moment gets no answer, and its SMS would end 'unknown'.
KEEPALIVE_EXPIRY = 2.0
POOL_TIMEOUT = 5.0

# aiohttp exception -> the httpx exception httpx's own transport raises for the
# same failure. First match wins, so subclasses come before their bases. Only
# the first group means "nothing was sent"; when unsure, map to a class that
# means "outcome unknown", never to one that invites a resend.
_AIOHTTP_TO_HTTPX: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),  # while connecting
    (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
    (aiohttp.ClientConnectorError, httpx.ConnectError),  # refused, DNS, TLS, certificate
    (aiohttp.ServerFingerprintMismatch, httpx.ConnectError),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),  # body cut short
    (aiohttp.ClientHttpProxyError, httpx.ProxyError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # bad status line / headers
    (aiohttp.UploadAbortedError, httpx.WriteError),
    (aiohttp.ClientOSError, httpx.ReadError),  # reset by peer, broken pipe
    (aiohttp.ClientConnectionError, httpx.ReadError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientError, httpx.TransportError),
    (asyncio.TimeoutError, httpx.ReadTimeout),
)


def _translate(exc: BaseException, request: httpx.Request) -> BaseException:
    """The httpx exception for ``exc``, judged by the original aiohttp error.

    httpx-aiohttp raises its own (lossy) mapping ``from`` the aiohttp error, so
    the cause is inspected first; anything not from aiohttp (cancellation,
    programming errors, httpx's own errors) is returned unchanged.
    """
    origin = exc
    if isinstance(exc, httpx.TransportError) and exc.__cause__ is not None:
        origin = exc.__cause__
    for source, target in _AIOHTTP_TO_HTTPX:
        if isinstance(origin, source):
            mapped = target(str(origin) or type(origin).__name__, request=request)
            mapped.__cause__ = origin
            return mapped
    return exc


class _Body(httpx.AsyncByteStream):
    """The response body: translates read errors, frees the pool slot on close."""

    def __init__(
        self, inner: httpx.AsyncByteStream, request: httpx.Request, release: Callable[[], None]
    ) -> None:
        self._inner = inner
        self._request = request
        self._release = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except Exception as exc:
            mapped = _translate(exc, self._request)
            if mapped is exc:
                raise
            raise mapped from mapped.__cause__

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        except Exception as exc:
            mapped = _translate(exc, self._request)
            if mapped is exc:
                raise
            raise mapped from mapped.__cause__
        finally:
            self._release()


class _NoResendAiohttpTransport(AiohttpTransport):
    """aiohttp's session sends an idempotent request (GET, PUT, ...) a second
    time when the server closes or resets the connection after reading it. For
    a panelsms GET that is a second SMS, so the resend is switched off. aiohttp
    3.14 has no public setting for it; ``_retry_connection`` is the attribute
    its ``ClientSession._request`` checks (tests/providers/test_http.py catches
    a change)."""

    def get_client(self) -> ClientSession:
        session = super().get_client()
        session._retry_connection = False
        return session


class SmsqAiohttpTransport(httpx.AsyncBaseTransport):
    """httpx-aiohttp's transport with httpx's exception types and a real pool timeout."""

    def __init__(self, *, limits: httpx.Limits) -> None:
        if limits.max_connections is None:
            raise ValueError("the aiohttp transport needs a bounded pool (max_connections)")
        self._inner = _NoResendAiohttpTransport(limits=limits)
        self._slots = asyncio.Semaphore(limits.max_connections)

    async def _acquire(self, request: httpx.Request, pool: float | None) -> None:
        try:
            async with asyncio.timeout(pool):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout(
                f"no connection free in the pool within {pool} s", request=request
            ) from None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout: dict[str, float | None] = request.extensions.get("timeout", {})
        await self._acquire(request, timeout.get("pool"))
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._slots.release()

        # A slot is held, so aiohttp's connector never waits: its "connect"
        # budget (which httpx-aiohttp takes from "pool") is the connect timeout.
        request.extensions = {
            **request.extensions,
            "timeout": {**timeout, "pool": timeout.get("connect")},
        }
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException as exc:
            release()
            mapped = _translate(exc, request)
            if mapped is exc:
                raise
            raise mapped from mapped.__cause__
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Body(response.stream, request, release)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def make_async_client(
    *,
    timeout: float = 10.0,
    max_connections: int = 100,
    transport: TransportName = DEFAULT_TRANSPORT,
) -> httpx.AsyncClient:
    """The pooled client for one worker process (create it after the fork).

    ``timeout`` is the read timeout; connect and pool waits are capped at 5 s.
    Redirects are not followed: a provider answering 3xx is a protocol error.
    """
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=KEEPALIVE_EXPIRY,
    )
    timeouts = httpx.Timeout(timeout, connect=CONNECT_TIMEOUT, pool=POOL_TIMEOUT)
    chosen: httpx.AsyncBaseTransport
    if transport == "aiohttp":
        chosen = SmsqAiohttpTransport(limits=limits)
    elif transport == "httpx":
        chosen = httpx.AsyncHTTPTransport(limits=limits)
    else:
        raise ValueError(f"unknown transport {transport!r}; expected 'aiohttp' or 'httpx'")
    return httpx.AsyncClient(
        transport=chosen, timeout=timeouts, limits=limits, follow_redirects=False
    )
