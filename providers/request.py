"""One HTTP request to a provider: vendor URL encoding, the short in-call
retry for requests that never left, and transport errors as provider errors.

The request goes straight to the client's transport
(``handle_async_request``), built once with the client's default headers
and timeout: the client's per-request layers (cookie jar, auth flow,
redirect loop, event hooks) do nothing for a provider request and cost
about a third of the CPU of a request (``bench/transport.py``, ``request``
against ``smsq``). The transport is the one the client would choose for the
URL, so transports mounted on the client still apply.

Only failures where the request provably did not reach the provider are
retried here (connect refused/timed out, no pooled connection free): sending
again cannot duplicate an SMS. Once bytes may have reached the provider (read
or write timeout, connection dropped mid-answer) the outcome is unknown and we
raise :class:`OutcomeUnknown` instead; the worker resolves it by delivery report
or a resend with the same transactionId.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from email.utils import parsedate_to_datetime
from functools import lru_cache
from urllib.parse import quote, urlencode

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from providers.errors import NoAnswer, TransportError

# Errors raised before a request was written to the wire.
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

IN_CALL_ATTEMPTS = 3
IN_CALL_MAX_WAIT = 0.5  # seconds; longer waits belong to the worker's retry with countdown
FIRST_RETRY_WAIT = 0.05  # seconds, at most, before the second attempt


def vendor_encode(params: dict[str, str]) -> str:
    """``a=b&c=d`` encoded as the vendors' table says: space is ``%20`` (not
    ``+``), and ``+ & = ? #``, accented letters and emoji are percent-encoded."""
    return urlencode(params, quote_via=quote, safe="")


async def send_request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    query: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    json: dict[str, str] | None = None,
    timeout: float | None = None,
) -> httpx.Response:
    """Send one request; raise :class:`TransportError` or :class:`OutcomeUnknown`."""
    if query:
        url = f"{url}{'&' if '?' in url else '?'}{vendor_encode(query)}"
    headers = client.headers.copy()
    content: bytes | None = None
    if form is not None:
        content = vendor_encode(form).encode("ascii")
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    limits = (_timeout(timeout) if timeout else client.timeout).as_dict()

    async def attempt() -> httpx.Response:
        # A fresh request per attempt: a transport may change its extensions.
        request = httpx.Request(
            method, url, headers=headers, content=content, json=json, extensions={"timeout": limits}
        )
        response = await client._transport_for_url(request.url).handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    try:
        try:
            # The common case costs no retry machinery: tenacity only takes
            # over once a first attempt provably never left.
            return await attempt()
        except NEVER_SENT:
            await asyncio.sleep(random.uniform(0, FIRST_RETRY_WAIT))
        async for retry in AsyncRetrying(
            retry=retry_if_exception_type(NEVER_SENT),
            stop=stop_after_attempt(IN_CALL_ATTEMPTS - 1),
            wait=wait_random_exponential(multiplier=0.05, max=IN_CALL_MAX_WAIT),
            reraise=True,
        ):
            with retry:
                return await attempt()
    except NEVER_SENT as exc:
        raise TransportError(
            f"request never reached the provider after {IN_CALL_ATTEMPTS} attempts: "
            f"{type(exc).__name__}"
        ) from None
    except httpx.TransportError as exc:
        # Read/write timeouts, a connection dropped mid-answer: it may have been sent.
        raise NoAnswer(f"no answer from the provider: {type(exc).__name__}") from None
    raise AssertionError("unreachable")  # pragma: no cover


@lru_cache(maxsize=32)
def _timeout(read: float) -> httpx.Timeout:
    return httpx.Timeout(read, connect=5.0, pool=5.0)


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
