"""One signed webhook POST to a checked address.

The SSRF rules are in ``smsq.core.netguard``; this module makes sure the request
goes where the check looked: the name is resolved once, every address is
checked, and the connection is made to a checked address (the URL's host is
replaced by the address; ``Host`` and, for https, the TLS server name and
certificate check keep the real hostname). A second lookup by the HTTP client
could be answered differently by a DNS-rebinding attacker; there is none.
Redirects are not followed, and the client ignores proxy environment
variables (a proxy would make its own lookup).
"""

from __future__ import annotations

import datetime as dt
import email.utils
from dataclasses import dataclass

import httpx

from smsq.core.netguard import Resolver, literal_address, resolve_and_check, target_of
from worker.webhooks.signing import sign


@dataclass(frozen=True, slots=True)
class Answer:
    """What the endpoint answered (the body is not read: we only need the status)."""

    status_code: int
    retry_after: float | None = None


def make_client() -> httpx.Client:
    """The per-process client for webhooks: no redirects, no proxies from the environment."""
    return httpx.Client(
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        headers={"user-agent": "smsq-webhooks/1"},
    )


def post_signed(
    client: httpx.Client,
    url: str,
    body: bytes,
    *,
    webhook_id: str,
    secret: str,
    now: dt.datetime,
    timeout: float,
    allow_http: bool,
    allow_private: bool,
    resolver: Resolver,
) -> Answer:
    """POST ``body`` signed with ``secret``; return the endpoint's answer.

    Raises ``netguard.BlockedTarget`` for a forbidden target, ``OSError`` when
    the name does not resolve and ``httpx.TransportError`` when no answer came:
    the caller decides what is worth retrying.
    """
    host, port = target_of(url, allow_http=allow_http)
    addresses = resolve_and_check(host, port, allow_private=allow_private, resolver=resolver)
    timestamp = int(now.timestamp())
    target = httpx.URL(url)
    headers = {
        "host": target.netloc.decode("ascii"),
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, webhook_id, timestamp, body),
    }
    extensions = {}
    if target.scheme == "https" and literal_address(host) is None:
        extensions["sni_hostname"] = target.raw_host.decode("ascii")
    last_error: httpx.TransportError | None = None
    for address in addresses:
        request = client.build_request(
            "POST",
            target.copy_with(host=address),
            content=body,
            headers=headers,
            extensions=extensions,
            timeout=httpx.Timeout(timeout),
        )
        try:
            response = client.send(request, stream=True, follow_redirects=False)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            last_error = exc  # nothing was sent: the next address may answer
            continue
        try:
            return Answer(response.status_code, parse_retry_after(response, now=now))
        finally:
            response.close()  # the body is not ours to read (it could be endless)
    assert last_error is not None  # resolve_and_check returns at least one address
    raise last_error


def parse_retry_after(response: httpx.Response, *, now: dt.datetime) -> float | None:
    """``Retry-After`` in seconds (either form), or None."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())
