"""The SSRF guard: scheme, literal addresses in every spelling, resolved addresses."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import pytest

from smsq.core.netguard import BlockedTarget, check_callback_url, resolve_and_check

FORBIDDEN_HOSTS = [
    "127.0.0.1",
    "2130706433",  # decimal
    "0177.0.0.1",  # octal
    "0x7f.0.0.1",  # hex
    "0x7f000001",
    "127.1",  # short form
    "[::1]",
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "[::ffff:7f00:1]",
    "[::7f00:1]",  # IPv4-compatible
    "[2002:7f00:1::]",  # 6to4
    "[64:ff9b::a00:1]",  # NAT64 of 10.0.0.1
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",  # carrier-grade NAT
    "169.254.169.254",  # metadata
    "[fd00:ec2::254]",
    "169.254.1.1",
    "[fe80::1]",
    "[fc00::1]",
    "0.0.0.0",
    "[::]",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "localhost",
    "api.localhost",
    "metadata.google.internal",
]


@pytest.mark.parametrize("host", FORBIDDEN_HOSTS)
def test_forbidden_literal_hosts_are_refused_without_dns(host: str) -> None:
    with pytest.raises(BlockedTarget):
        check_callback_url(f"https://{host}/hook", allow_http=False, allow_private=False)


@pytest.mark.parametrize("host", ["93.184.215.14", "[2606:4700::1111]", "hooks.example.com"])
def test_public_hosts_pass(host: str) -> None:
    url = f"https://{host}/hook?x=1"
    assert check_callback_url(url, allow_http=False, allow_private=False) == url


def test_http_needs_the_setting() -> None:
    with pytest.raises(BlockedTarget, match="SMSQ_WEBHOOK_ALLOW_HTTP"):
        check_callback_url("http://hooks.example.com/", allow_http=False, allow_private=False)
    url = "http://hooks.example.com/"
    assert check_callback_url(url, allow_http=True, allow_private=False) == url


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/", "file:///etc/passwd", "https:///nohost", "https://u:p@example.com/"],
)
def test_bad_forms_are_refused(url: str) -> None:
    with pytest.raises(BlockedTarget):
        check_callback_url(url, allow_http=True, allow_private=False)


def test_allow_private_permits_loopback_but_never_metadata() -> None:
    check_callback_url("http://127.0.0.1:8000/", allow_http=True, allow_private=True)
    with pytest.raises(BlockedTarget, match="metadata"):
        check_callback_url("http://169.254.169.254/", allow_http=True, allow_private=True)
    with pytest.raises(BlockedTarget, match="metadata"):
        check_callback_url("http://[::ffff:169.254.169.254]/", allow_http=True, allow_private=True)


def fake_resolver(table: dict[str, list[str]]) -> Any:
    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> Sequence[tuple[Any, ...]]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (a, port, 0, 0) if ":" in a else (a, port),
            )
            for a in table[host]
        ]

    return resolve


def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    resolver = fake_resolver({"evil.example": ["10.0.0.5"]})
    with pytest.raises(BlockedTarget, match=r"10\.0\.0\.5.*private"):
        resolve_and_check("evil.example", 443, allow_private=False, resolver=resolver)


def test_one_private_record_among_public_ones_is_refused() -> None:
    resolver = fake_resolver({"mixed.example": ["93.184.215.14", "127.0.0.1"]})
    with pytest.raises(BlockedTarget, match="loopback"):
        resolve_and_check("mixed.example", 443, allow_private=False, resolver=resolver)


def test_a_private_aaaa_record_is_refused() -> None:
    resolver = fake_resolver({"v6.example": ["2606:4700::1111", "::ffff:10.0.0.1"]})
    with pytest.raises(BlockedTarget, match="IPv4-mapped"):
        resolve_and_check("v6.example", 443, allow_private=False, resolver=resolver)


def test_public_addresses_are_returned() -> None:
    resolver = fake_resolver({"ok.example": ["93.184.215.14", "2606:4700::1111"]})
    addresses = resolve_and_check("ok.example", 443, allow_private=False, resolver=resolver)
    assert addresses == ["93.184.215.14", "2606:4700::1111"]


@pytest.mark.parametrize("host", ["2130706433", "0177.0.0.1", "0x7f.0.0.1", "127.1"])
def test_numeric_forms_are_caught_through_the_real_resolver(host: str) -> None:
    with pytest.raises(BlockedTarget, match=r"127\.0\.0\.1"):
        resolve_and_check(host, 80, allow_private=False)


def test_a_name_that_does_not_resolve_is_an_os_error() -> None:
    with pytest.raises(OSError):
        resolve_and_check("nx.example", 443, allow_private=False, resolver=fake_resolver({}))
