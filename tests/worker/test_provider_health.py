"""The circuit breaker's rules (worker.provider_health), on fakeredis and a real Redis."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from providers.base import Accepted, Outcome, Rejected
from providers.errors import (
    NoAnswer,
    OutcomeUnknown,
    PermanentError,
    QueueFull,
    Throttled,
    TransportError,
    error_for_code,
    error_for_http_status,
)
from worker.provider_health import (
    PEEK_FRESH,
    BreakerSettings,
    BreakerState,
    Kind,
    ProviderHealth,
    classify,
    holding_all,
    is_outage_failure,
)

SETTINGS = BreakerSettings(failures=3, share=0.5, min_answers=4, window=10.0, probe_interval=0.2)


def ok() -> Outcome:
    return Accepted("m", "p1")


def refused() -> Outcome:
    return Rejected("m", TransportError("connection refused"))


def bare(status: int) -> Outcome:
    error = error_for_http_status(status)
    assert error is not None
    return Rejected("m", error)


def vendor(code: int) -> Outcome:
    return Rejected("m", error_for_code(code))


@pytest.fixture
def health(redis_client: redis.Redis) -> ProviderHealth:
    return ProviderHealth(redis_client, "panel", SETTINGS)


@pytest.mark.parametrize(
    ("outcome", "kind", "outage"),
    [
        (ok(), Kind.ANSWER, False),
        (refused(), Kind.TRANSPORT, True),
        (Rejected("m", NoAnswer("read timeout")), Kind.TRANSPORT, False),
        (bare(503), Kind.BAD_5XX, True),
        (bare(500), Kind.BAD_5XX, True),
        (bare(429), Kind.ANSWER, False),
        (vendor(6), Kind.ANSWER, False),
        (vendor(7), Kind.ANSWER, False),
        (Rejected("m", PermanentError(14)), Kind.ANSWER, False),
        (Rejected("m", OutcomeUnknown("sending failed inside smsq")), Kind.NONE, False),
    ],
)
def test_classify(outcome: Outcome, kind: Kind, outage: bool) -> None:
    assert classify(outcome) is kind
    assert is_outage_failure(outcome) is outage


def test_a_fresh_breaker_is_closed(health: ProviderHealth) -> None:
    assert health.gate().send
    state = health.state()
    assert state.state is BreakerState.CLOSED
    assert state.since is None


def test_consecutive_transport_failures_open_it(health: ProviderHealth) -> None:
    assert health.record([refused(), refused()]) is BreakerState.CLOSED
    assert health.record([ok()]) is BreakerState.CLOSED  # an answer ends the streak
    assert health.record([refused(), refused()]) is BreakerState.CLOSED
    assert health.record([refused()]) is BreakerState.OPEN
    state = health.state()
    assert state.state is BreakerState.OPEN
    assert state.since is not None
    assert state.reason is not None and "transport" in state.reason


def test_read_timeouts_count_as_transport_failures(health: ProviderHealth) -> None:
    timeout = Rejected("m", NoAnswer("no answer from the provider: ReadTimeout"))
    assert health.record([timeout] * 3) is BreakerState.OPEN


def test_a_high_share_of_bare_5xx_opens_it(health: ProviderHealth) -> None:
    assert health.record([bare(503)] * 3) is BreakerState.CLOSED  # fewer than min_answers
    assert health.record([ok(), ok(), ok(), ok()]) is BreakerState.CLOSED  # 3 of 7
    assert health.record([bare(502)]) is BreakerState.OPEN  # 4 of 8


def test_one_request_carrying_many_numbers_counts_once(health: ProviderHealth) -> None:
    def request(outcome: Outcome) -> BreakerState:
        return health.record([outcome] * 50, one_request=True)

    assert [request(ok()) for _ in range(3)] == [BreakerState.CLOSED] * 3
    assert request(bare(503)) is BreakerState.CLOSED  # 1 of 4
    assert request(refused()) is BreakerState.CLOSED  # a streak of 1
    assert request(bare(503)) is BreakerState.CLOSED  # 2 of 5
    assert request(bare(503)) is BreakerState.OPEN  # 3 of 6


@pytest.mark.parametrize("code", [6, 7])
def test_readable_vendor_codes_6_and_7_never_open_it(health: ProviderHealth, code: int) -> None:
    for _ in range(10):
        assert health.record([vendor(code)] * 10) is BreakerState.CLOSED
    assert isinstance(vendor(6).error, QueueFull)  # type: ignore[union-attr]
    assert isinstance(vendor(7).error, Throttled)  # type: ignore[union-attr]


def test_open_lets_one_probe_through_per_interval_fleet_wide(
    redis_client: redis.Redis,
) -> None:
    workers = [ProviderHealth(redis_client, "panel", SETTINGS) for _ in range(3)]
    assert workers[0].record([refused()] * 3) is BreakerState.OPEN
    # Right after opening: no probe before one interval has passed.
    gates = [w.gate() for w in workers]
    assert not any(g.send or g.probe for g in gates)
    assert all(0 < g.wait <= SETTINGS.probe_interval for g in gates)
    time.sleep(SETTINGS.probe_interval + 0.05)
    gates = [w.gate() for w in workers for _ in range(3)]
    assert sum(g.probe for g in gates) == 1
    assert not any(g.send for g in gates)
    assert workers[0].state().state is BreakerState.HALF_OPEN


def test_a_failed_probe_keeps_it_open_a_successful_one_closes_it(
    health: ProviderHealth,
) -> None:
    health.record([refused()] * 3)
    opened = health.state().since
    time.sleep(SETTINGS.probe_interval + 0.05)
    assert health.gate().probe
    assert health.record([bare(503)], probe=True) is BreakerState.OPEN
    assert health.state().since == opened  # the outage's start is kept
    assert not health.gate().probe  # the next probe waits its interval
    time.sleep(SETTINGS.probe_interval + 0.05)
    assert health.gate().probe
    assert health.record([vendor(6)], probe=True) is BreakerState.CLOSED  # an answer
    assert health.gate().send
    assert health.state().state is BreakerState.CLOSED


def test_results_in_flight_when_it_opened_do_not_change_it(health: ProviderHealth) -> None:
    health.record([refused()] * 3)
    assert health.record([ok()]) is BreakerState.OPEN  # only a probe closes it
    assert health.record([refused()]) is BreakerState.OPEN


def test_a_probe_whose_worker_died_is_replaced_after_the_interval(
    health: ProviderHealth,
) -> None:
    health.record([refused()] * 3)
    time.sleep(SETTINGS.probe_interval + 0.05)
    assert health.gate().probe  # ... and that worker never reports
    time.sleep(SETTINGS.probe_interval + 0.05)
    assert health.gate().probe


def test_holding_says_how_long_it_holds_every_message_and_takes_nothing(
    redis_client: redis.Redis,
) -> None:
    clock = [100.0]
    peeker = ProviderHealth(redis_client, "panel", SETTINGS, monotonic=lambda: clock[0])
    other = ProviderHealth(redis_client, "panel", SETTINGS)
    assert peeker.holding() == 0  # closed
    other.record([refused()] * 3)
    assert peeker.holding() == 0  # a closed answer is trusted for PEEK_FRESH seconds
    clock[0] += PEEK_FRESH
    held = peeker.holding()
    assert 0 < held <= SETTINGS.probe_interval  # open: until the probe is due
    time.sleep(SETTINGS.probe_interval + 0.05)
    clock[0] += held
    assert peeker.holding() == 0  # the probe is due ...
    assert other.gate().probe  # ... and peeking did not take it


def test_holding_all_asks_once_for_every_stale_breaker_and_not_for_fresh_ones(
    redis_client: redis.Redis,
) -> None:
    clock = [100.0]
    panel, brand, spare = (
        ProviderHealth(redis_client, name, SETTINGS, monotonic=lambda: clock[0])
        for name in ("panel", "brand", "spare")
    )
    ProviderHealth(redis_client, "brand", SETTINGS).record([refused()] * 3)
    assert panel.holding() == 0  # asked alone: fresh for PEEK_FRESH seconds
    sent: list[int] = []
    execute = redis.client.Pipeline.execute

    def counting(pipe: redis.client.Pipeline, raise_on_error: bool = True) -> list[Any]:
        sent.append(len(pipe.command_stack))
        return execute(pipe, raise_on_error)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(redis.client.Pipeline, "execute", counting)
        waits = holding_all([panel, brand, spare])

    assert waits[0] == 0 and 0 < waits[1] <= SETTINGS.probe_interval and waits[2] == 0
    assert sent == [2]  # one round trip, for brand and spare; panel's answer was fresh
    assert (panel.holding(), spare.holding()) == (0, 0)  # now fresh too: no call


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="share"):
        BreakerSettings(share=0)
    with pytest.raises(ValueError, match="probe_interval"):
        BreakerSettings(probe_interval=0)
