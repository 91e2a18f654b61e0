"""Routes across provider accounts on the real stack (issue 11, docs/routing.md):
failover when an account refuses connections, the weighted split, and
country and prefix routes, counted at the simulator and in the database.

The figures of record (kill the provider's process, 5,000-message splits,
CPU) are ``bench/routing.py``'s; these are short checks of the same rules.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from models.tables import Message
from providers.brand.protocol import Param as BrandParam
from providers.panelsms.protocol import Param as PanelParam

pytestmark = pytest.mark.integration

SENT = ("sent", "delivered")  # brand reports come back within the test


def refused_url() -> str:
    """A URL on a local port nothing listens on: every connection is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/sendMtSms.php"


def rows(stack: Any) -> list[tuple[str, str, str, str | None]]:
    """(to, status, provider, route) of every message."""
    with stack.sessions() as session:
        query = select(Message.to, Message.status, Message.provider, Message.route)
        return [(r[0], r[1], r[2], r[3]) for r in session.execute(query)]


def all_sent(stack: Any, total: int) -> Callable[[], bool]:
    return lambda: sum(n for s, n in stack.counts().items() if s in SENT) == total


def numbers_by_account(stack: Any) -> dict[str, Counter[str]]:
    """Destination digits each vendor's endpoint accepted, from the simulator's
    ring of recent requests (big enough for these tests' few requests)."""
    seen: dict[str, Counter[str]] = {"panel": Counter(), "brand": Counter()}
    for request in stack.sim.last_requests:
        if request["status"] != 200:
            continue
        params = request["params"]
        if request["route"] == "/brand/send":
            seen["brand"].update(n.lstrip("+") for n in params[BrandParam.NUMBERS].split(","))
        else:
            seen["panel"][params[PanelParam.TO].lstrip("+")] += 1
    return seen


def test_an_account_refusing_connections_hands_its_route_to_the_other_none_twice(
    live: Callable[..., Any],
) -> None:
    stack = live(
        panel_url=refused_url(),
        routes="""
[[routes]]
name = "fallback"
kinds = ["campaign"]
accounts = ["panel", "brand"]
""",
    )
    stack.worker("otp,transactional,campaign")
    stack.beat()
    numbers = [f"+4915123{i:06d}" for i in range(40)]
    stack.producer().submit_campaign("failover", numbers, "Spring sale")
    stack.wait_until(all_sent(stack, 40), 25, "every message sent")

    stats = stack.sim.stats()
    assert stats["requests"]["by_route"].get("/brand/send", 0) >= 1
    assert stats["duplicates"] == []
    assert sorted(stats["per_number"]) == sorted(n[1:] for n in numbers)
    assert set(stats["per_number"].values()) == {1}, "each number sent exactly once"
    assert {(p, r) for _to, _s, p, r in rows(stack)} == {("brand", "fallback")}


def test_weights_split_a_campaign_between_the_accounts(live: Callable[..., Any]) -> None:
    stack = live(
        routes="""
[[routes]]
name = "split"
kinds = ["campaign"]
accounts = ["panel", "brand"]
weights = [70, 30]
""",
    )
    stack.worker("otp,transactional,campaign")
    total = 300
    numbers = [f"+4915123{i:06d}" for i in range(total)]
    stack.producer().submit_campaign("split", numbers, "Spring sale")
    stack.wait_until(all_sent(stack, total), 25, "every message sent")

    by_account = Counter(p for _to, _s, p, _r in rows(stack))
    # The split is exact per worker process; two pool processes may each be
    # a message or two off it within their batches.
    assert abs(100 * by_account["panel"] / total - 70) <= 5, by_account
    stats = stack.sim.stats()
    assert stats["requests"]["by_route"]["/sendMtSms.php"] == by_account["panel"]
    assert sum(stats["per_number"].values()) == total and stats["duplicates"] == []
    assert {r for *_rest, r in rows(stack)} == {"split"}


FRANCE, BELGIUM = "+33612345{:03d}", "+32470123{:03d}"
GERMANY_151, GERMANY_171 = "+49151234{:05d}", "+49171234{:05d}"
ITALY, BRITAIN = "+39312345{:04d}", "+44791123{:04d}"


def test_country_and_prefix_routes_put_each_number_on_its_account(
    live: Callable[..., Any],
) -> None:
    stack = live(
        routes="""
[[routes]]
name = "de-151"
prefixes = ["+49151"]
accounts = ["brand"]

[[routes]]
name = "fr-be"
countries = ["FR", "BE"]
accounts = ["brand"]

[[routes]]
name = "de"
countries = ["DE"]
accounts = ["panel"]
""",
    )
    stack.worker("otp,transactional,campaign")
    expected: dict[str, tuple[str, str | None]] = {}
    for i in range(5):
        expected[FRANCE.format(i)] = ("brand", "fr-be")
        expected[BELGIUM.format(i)] = ("brand", "fr-be")
        expected[GERMANY_151.format(i)] = ("brand", "de-151")
        expected[GERMANY_171.format(i)] = ("panel", "de")
        expected[ITALY.format(i)] = ("panel", None)  # no route: SMSQ_DEFAULT_PROVIDER
        expected[BRITAIN.format(i)] = ("panel", None)
    stack.producer().submit_campaign("mixed", list(expected), "Spring sale")
    stack.wait_until(all_sent(stack, len(expected)), 25, "every message sent")

    assert {to: (p, r) for to, _s, p, r in rows(stack)} == expected
    seen = numbers_by_account(stack)
    for number, (account, _route) in expected.items():
        other = "panel" if account == "brand" else "brand"
        assert seen[account][number[1:]] == 1, (number, account)
        assert seen[other][number[1:]] == 0, (number, other)
