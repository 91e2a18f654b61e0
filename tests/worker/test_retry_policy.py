"""worker.retry_policy: how long a retryable answer waits, and whether it is
tried again at all. Pure rules, so each is a table."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from worker.retry_policy import RetryPolicy, Verdict

NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
POLICY = RetryPolicy(base=1.0, cap=60.0, max_attempts=5)


class Highest(random.Random):
    """An rng whose every draw is the top of its range: the ceiling itself."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Lowest(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


# attempt (1-based, the one that just failed) -> the ceiling of its wait:
# base * 2^(attempt - 1), never above the cap.
CEILINGS = [
    (0, 1.0),  # not a real attempt number: treated as the first
    (1, 1.0),
    (2, 2.0),
    (3, 4.0),
    (6, 32.0),
    (7, 60.0),  # 64 > cap
    (50, 60.0),  # no overflow however many attempts
]


@pytest.mark.parametrize(("attempt", "ceiling"), CEILINGS)
def test_the_wait_is_full_jitter_below_an_exponential_ceiling(attempt: int, ceiling: float) -> None:
    assert POLICY.backoff(attempt, rng=Highest()) == ceiling
    assert POLICY.backoff(attempt, rng=Lowest()) == 0.0
    rng = random.Random(1234)
    waits = [POLICY.backoff(attempt, rng=rng) for _ in range(500)]
    assert all(0.0 <= w <= ceiling for w in waits)
    # Full jitter: the waits spread over the whole range, not bunched at the top.
    assert min(waits) < 0.1 * ceiling and max(waits) > 0.9 * ceiling


def test_a_seeded_rng_gives_the_same_waits() -> None:
    def waits(seed: int) -> list[float]:
        rng = random.Random(seed)
        return [POLICY.backoff(a, rng=rng) for a in range(1, 10)]

    assert waits(7) == waits(7)
    assert waits(7) != waits(8)


@pytest.mark.parametrize(
    ("attempt", "retry_after", "rng", "wait"),
    [
        (1, 30.0, Lowest(), 30.0),  # the provider's Retry-After is a floor...
        (1, 30.0, Highest(), 30.0),  # ...above a ceiling of 1 s
        (7, 30.0, Highest(), 60.0),  # a longer random wait stays longer
        (7, 30.0, Lowest(), 30.0),
        (1, 3600.0, Lowest(), 60.0),  # but no floor above the cap
        (1, 0.0, Lowest(), 0.0),
        (3, None, Highest(), 4.0),  # no Retry-After: the jitter alone
    ],
)
def test_retry_after_is_a_floor_up_to_the_cap(
    attempt: int, retry_after: float | None, rng: random.Random, wait: float
) -> None:
    assert POLICY.backoff(attempt, retry_after, rng) == wait


def _in(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("attempts", "wait", "expires_at", "verdict"),
    [
        (1, 10.0, None, Verdict.RETRY),
        (4, 10.0, None, Verdict.RETRY),
        (5, 10.0, None, Verdict.GIVE_UP),  # the attempt cap
        (9, 10.0, None, Verdict.GIVE_UP),
        (1, 10.0, _in(11), Verdict.RETRY),
        (1, 10.0, _in(10), Verdict.EXPIRE),  # the next attempt would come too late
        (1, 10.0, _in(5), Verdict.EXPIRE),
        (1, 0.0, NOW, Verdict.EXPIRE),
        (5, 10.0, _in(5), Verdict.EXPIRE),  # expiry is named before the cap
        (5, 10.0, _in(3600), Verdict.GIVE_UP),
    ],
)
def test_decide(
    attempts: int, wait: float, expires_at: dt.datetime | None, verdict: Verdict
) -> None:
    assert POLICY.decide(attempts=attempts, wait=wait, now=NOW, expires_at=expires_at) is verdict


def test_the_defaults_end_every_retry() -> None:
    policy = RetryPolicy()
    verdict = policy.decide(attempts=policy.max_attempts, wait=0, now=NOW, expires_at=None)
    assert verdict is Verdict.GIVE_UP


def test_the_wait_stays_at_the_cap_for_any_attempt_number() -> None:
    assert POLICY.backoff(1026, rng=Highest()) == POLICY.cap
