"""The SSRF guard for customer callback URLs: which targets smsq may call.

A callback URL is chosen by a customer, and the worker that calls it sits
inside our network. Without a guard a customer could make us POST to the cloud
metadata service, an admin port on localhost or a database on the private
network. The rules:

- ``https`` only; ``http`` only where ``SMSQ_WEBHOOK_ALLOW_HTTP`` allows it.
- No credentials in the URL, no URL longer than 2048 characters.
- The target address must be globally routable: no loopback, private
  (RFC 1918, ``fc00::/7``), link-local (``169.254/16``, ``fe80::/10``), CGNAT
  (``100.64/10``), ``0.0.0.0/8``, multicast, reserved or unspecified address,
  and no IPv4-mapped, IPv4-compatible, 6to4 or NAT64 form of one.
  ``SMSQ_WEBHOOK_ALLOW_PRIVATE`` lifts this for local development; the cloud
  metadata addresses stay refused even then.
- The check is on every address the name resolves to (A and AAAA), and the
  caller connects to a checked address (no second lookup a DNS-rebinding
  attacker could answer differently). Redirects are never followed.

Numeric hosts in the forms old C resolvers accept (``2130706433``,
``0177.0.0.1``, ``0x7f.0.0.1``, ``127.1``) are read the way ``inet_aton``
reads them, i.e. the way the connection would, so they cannot slip past.

A leaf like ``smsq.core.settings``: the producer checks a URL when it accepts it
(:func:`check_callback_url`, no DNS), the worker again before each attempt
(:func:`resolve_and_check`).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., Sequence[tuple[Any, ...]]]  # socket.getaddrinfo's shape

MAX_URL_LENGTH = 2048  # DisabledWebhookEndpoint.url holds this much

# Refused even with allow_private: a metadata service hands out cloud credentials.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS over IPv6
    )
)
# Names that mean "this machine" or "the metadata service" without any DNS.
BLOCKED_NAMES = ("localhost", "metadata.google.internal", "metadata")

CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class BlockedTarget(ValueError):
    """The URL or an address it resolves to is not one smsq may call."""


def check_callback_url(url: str, *, allow_http: bool, allow_private: bool) -> str:
    """Return ``url`` if it may be used as a callback URL, else raise ``BlockedTarget``.

    No DNS here (the producer calls this on the request path): a literal
    address or a name that always means this machine is judged now; a
    hostname's addresses are judged by :func:`resolve_and_check` at delivery.
    """
    parts = _split(url, allow_http=allow_http)
    host = _host_of(parts.hostname)
    literal = literal_address(host)
    if literal is not None:
        reason = forbidden_reason(literal, allow_private=allow_private)
        if reason:
            raise BlockedTarget(f"callback URL host {host}: {reason}")
    elif not allow_private and _is_blocked_name(host):
        raise BlockedTarget(f"callback URL host {host} is a local or metadata name")
    return url


def target_of(url: str, *, allow_http: bool) -> tuple[str, int]:
    """The host and port a callback URL connects to (scheme and form checked)."""
    parts = _split(url, allow_http=allow_http)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return _host_of(parts.hostname), port


def resolve_and_check(
    host: str, port: int, *, allow_private: bool, resolver: Resolver = socket.getaddrinfo
) -> list[str]:
    """Every address ``host`` resolves to, after checking each of them.

    Raises ``BlockedTarget`` if any address is forbidden (one private A record
    among public ones is enough: which one a client picks is not ours to
    guess), and ``OSError`` (``socket.gaierror``) when the name does not
    resolve, which is worth retrying.
    """
    if not allow_private and _is_blocked_name(host):
        raise BlockedTarget(f"{host} is a local or metadata name")
    literal = literal_address(host)
    # A literal is resolved too: getaddrinfo is what turns "0x7f.1" into 127.0.0.1.
    infos = resolver(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise socket.gaierror(f"{host} resolved to no address")
    for address in addresses:
        reason = forbidden_reason(ipaddress.ip_address(address), allow_private=allow_private)
        if reason:
            shown = host if literal is None or str(literal) == host else f"{host} ({literal})"
            raise BlockedTarget(f"{shown} resolves to {address}: {reason}")
    return addresses


def forbidden_reason(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why smsq must not connect to ``address``, or None if it may."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            form, v4 = embedded
            reason = forbidden_reason(v4, allow_private=allow_private)
            return f"{form} form of {v4}, {reason}" if reason else None
    if allow_private:
        return None
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in CGNAT:
        return "a carrier-grade NAT address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a reserved, not globally routable address"
    return None


def literal_address(host: str) -> IPAddress | None:
    """``host`` as an IP address if it is one in any form a resolver accepts."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # inet_aton's forms: decimal, octal and hex parts, fewer than four parts.
    if host and all(c in "0123456789abcdefx." for c in host) and host[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    if any(address in net for net in NAT64):
        return "NAT64", ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    if int(address) >> 32 == 0 and int(address) > 1:  # ::a.b.c.d, deprecated IPv4-compatible
        return "IPv4-compatible", ipaddress.IPv4Address(int(address))
    return None


def _split(url: str, *, allow_http: bool) -> Any:
    if len(url) > MAX_URL_LENGTH:
        raise BlockedTarget(f"callback URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise BlockedTarget(f"callback URL is not a valid URL: {exc}") from None
    allowed = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in allowed:
        shown = parts.scheme or "none"
        raise BlockedTarget(
            f"callback URL scheme must be {' or '.join(allowed)} (got {shown})"
            + ("" if allow_http else "; http is allowed only with SMSQ_WEBHOOK_ALLOW_HTTP")
        )
    if not parts.hostname:
        raise BlockedTarget("callback URL has no host")
    if parts.username is not None or parts.password is not None:
        raise BlockedTarget("callback URL must not carry credentials")
    return parts


def _host_of(hostname: str) -> str:
    return hostname.lower().rstrip(".")


def _is_blocked_name(host: str) -> bool:
    return any(host == name or host.endswith("." + name) for name in BLOCKED_NAMES)
