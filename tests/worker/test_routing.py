"""worker.routing on its own: which account a routed message gets."""

from __future__ import annotations

from collections import Counter

import pytest

from providers.routes import Route
from worker.claims import Claimed
from worker.routing import AVOID_AFTER_REFUSAL, Router

FAILOVER = Route(name="otp", accounts=("a", "b", "c"))
SPLIT = Route(name="bulk", accounts=("a", "b"), weights=(70, 30))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def message(n: int, route: str | None, provider: str = "a") -> Claimed:
    return Claimed(
        id=f"m{n}",
        to="+4915550000000",
        text="hi",
        sender=None,
        kind="transactional",
        provider=provider,
        segments=1,
        attempts=1,
        parts_sent=0,
        stop_list=False,
        flash=False,
        expires_at=None,
        campaign_id=None,
        route=route,
    )


def accounts(router: Router, route: str | None, n: int, down: set[str]) -> Counter[str]:
    chosen, stuck = router.assign([message(i, route) for i in range(n)], down)
    assert stuck == []
    return Counter(m.provider for m in chosen)


@pytest.mark.parametrize(
    ("down", "expected"),
    [(set(), "a"), ({"a"}, "b"), ({"a", "b"}, "c"), ({"b"}, "a")],
)
def test_without_weights_the_first_healthy_account_in_order(down: set[str], expected: str) -> None:
    router = Router({"otp": FAILOVER})
    assert accounts(router, "otp", 5, down) == {expected: 5}


def test_back_to_the_first_account_once_it_is_healthy_again() -> None:
    router = Router({"otp": FAILOVER})
    assert [dict(accounts(router, "otp", 3, d)) for d in (set(), {"a"}, set())] == [
        {"a": 3},
        {"b": 3},
        {"a": 3},
    ]


def test_weights_split_seventy_thirty_over_a_thousand_messages() -> None:
    router = Router({"bulk": SPLIT})
    counts: Counter[str] = Counter()
    for _ in range(10):  # batches of 100, the state carries over
        counts += accounts(router, "bulk", 100, set())
    assert abs(counts["a"] / 1000 - 0.70) <= 0.03
    assert abs(counts["b"] / 1000 - 0.30) <= 0.03


def test_split_is_smooth_within_a_batch() -> None:
    router = Router({"bulk": SPLIT})
    chosen, _ = router.assign([message(i, "bulk") for i in range(10)], set())
    # Interleaved, not 7 then 3: each account's share is spread over the batch.
    assert "".join(m.provider for m in chosen) == "abaaabaaba"


def test_a_down_accounts_share_goes_to_the_others_and_comes_back() -> None:
    router = Router({"bulk": SPLIT})
    assert accounts(router, "bulk", 1000, {"b"}) == {"a": 1000}
    back = accounts(router, "bulk", 1000, set())
    assert back == {"a": 700, "b": 300}


def test_a_route_with_no_healthy_account_is_held_and_its_messages_stuck() -> None:
    router = Router({"bulk": SPLIT, "otp": FAILOVER})
    assert router.held_routes({"a", "b"}) == {"bulk"}
    chosen, stuck = router.assign([message(1, "bulk"), message(2, "otp")], {"a", "b"})
    assert [m.id for m in stuck] == ["m1"]
    assert [(m.id, m.provider) for m in chosen] == [("m2", "c")]


def test_unrouted_messages_and_unknown_routes_keep_their_provider() -> None:
    router = Router({"otp": FAILOVER})
    plain, gone = message(1, None, "b"), message(2, "removed-route", "b")
    chosen, stuck = router.assign([plain, gone], {"b"})
    assert chosen == [plain, gone] and stuck == []


def test_an_account_that_refused_is_avoided_for_a_moment_unless_it_is_the_last() -> None:
    clock = Clock()
    router = Router({"otp": FAILOVER}, monotonic=clock)
    router.avoid("a")
    assert accounts(router, "otp", 2, set()) == {"b": 2}
    assert router.has_other(message(1, "otp", "b"), {"c"}) is False  # a refused, c down
    assert accounts(router, "otp", 2, {"b", "c"}) == {"a": 2}  # nothing else: a after all
    clock.now += AVOID_AFTER_REFUSAL + 0.1
    assert accounts(router, "otp", 2, set()) == {"a": 2}


@pytest.mark.parametrize("route", [FAILOVER, SPLIT])
def test_an_account_whose_probe_is_due_gets_one_message_the_rest_go_elsewhere(
    route: Route,
) -> None:
    router = Router({route.name: route})
    accounts(router, route.name, 3, set())  # some round-robin state before
    chosen, _ = router.assign([message(i, route.name) for i in range(10)], set(), {"a"})
    assert Counter(m.provider for m in chosen)["a"] == 1


def test_an_account_whose_probe_is_due_takes_everything_when_it_is_the_only_one() -> None:
    router = Router({"otp": FAILOVER})
    assert accounts(router, "otp", 1, set()) == {"a": 1}
    chosen, _ = router.assign([message(i, "otp") for i in range(4)], {"b", "c"}, {"a"})
    assert Counter(m.provider for m in chosen) == {"a": 4}
