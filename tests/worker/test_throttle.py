"""The shared token bucket: rate, burst, AIMD factor, and many processes at once.

Every test but the last runs against fakeredis and a real Redis (the
``redis_client`` fixture); the last proves the point of the bucket, that four
separate processes together keep one rate.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from smsq.core.names import bucket_key
from worker.throttle import Grant, TokenBucket, pause_provider, paused_flags, resume_provider


@pytest.fixture
def provider() -> str:
    """A bucket name of this test's own: a concurrent run cannot share its key."""
    return f"test-{uuid.uuid4().hex[:12]}"


def drain(bucket: TokenBucket) -> None:
    """Take every whole token there is."""
    assert bucket.acquire(bucket.burst, minimum=1).granted >= 1


def test_fresh_bucket_grants_burst_then_waits_for_the_rate(
    redis_client: redis.Redis, provider: str
) -> None:
    bucket = TokenBucket(redis_client, provider, rate=10, burst=5)

    assert bucket.acquire(5) == Grant(granted=5, wait=0.0, factor=1.0)
    refused = bucket.acquire(1)

    assert refused.granted == 0
    assert 0.08 <= refused.wait <= 0.1  # one token at 10/s, less the time since
    assert refused.factor == 1.0


def test_bucket_refills_at_the_rate(redis_client: redis.Redis, provider: str) -> None:
    bucket = TokenBucket(redis_client, provider, rate=100, burst=50)
    drain(bucket)

    time.sleep(0.05)

    assert 4 <= bucket.acquire(50, minimum=1).granted <= 8  # ≈ 5, plus call latency


def test_all_or_nothing_by_default_partial_with_minimum(
    redis_client: redis.Redis, provider: str
) -> None:
    bucket = TokenBucket(redis_client, provider, rate=1, burst=5)
    assert bucket.acquire(3).granted == 3  # 2 left

    all_or_nothing = bucket.acquire(5)
    assert all_or_nothing.granted == 0
    assert 2.9 <= all_or_nothing.wait <= 3.0  # 3 more tokens at 1/s

    assert bucket.acquire(5, minimum=2).granted == 2
    assert bucket.acquire(5, minimum=1).granted == 0


def test_a_reserve_is_left_for_callers_without_one(
    redis_client: redis.Redis, provider: str
) -> None:
    bucket = TokenBucket(redis_client, provider, rate=1, burst=10)

    assert bucket.acquire(10, minimum=1, reserve=3).granted == 7  # the campaign
    refused = bucket.acquire(1, reserve=3)
    assert refused.granted == 0
    assert 0.9 <= refused.wait <= 1.0  # the 4th token: the reserve refills first
    assert bucket.acquire(3, minimum=1).granted == 3  # an OTP finds the reserve
    assert bucket.acquire(1).granted == 0


def test_the_otp_reserve_is_seconds_of_rate_capped_at_half_the_burst(
    redis_client: redis.Redis, provider: str
) -> None:
    assert TokenBucket(redis_client, provider, rate=300, burst=300).otp_reserve(0.1) == 30
    assert TokenBucket(redis_client, provider, rate=300, burst=40).otp_reserve(0.1) == 20
    assert TokenBucket(redis_client, provider, rate=2, burst=5).otp_reserve(0.1) == 1
    assert TokenBucket(redis_client, provider, rate=2, burst=1).otp_reserve(0.1) == 0
    assert TokenBucket(redis_client, provider, rate=300, burst=300).otp_reserve(0) == 0


def test_a_reserve_never_starves_the_caller_of_a_one_token_bucket(
    redis_client: redis.Redis, provider: str
) -> None:
    bucket = TokenBucket(redis_client, provider, rate=1, burst=1)
    assert bucket.acquire(1, reserve=5).granted == 1  # capped below the burst


def test_refund_gives_tokens_back_but_never_beyond_burst(
    redis_client: redis.Redis, provider: str
) -> None:
    bucket = TokenBucket(redis_client, provider, rate=1, burst=5)
    assert bucket.acquire(5).granted == 5

    bucket.refund(2)
    assert bucket.acquire(5, minimum=1).granted == 2

    bucket.refund(100)
    assert bucket.state().tokens == 5.0
    assert bucket.acquire(6, minimum=1).granted == 5


def test_multi_segment_requests_take_one_token_per_segment(
    redis_client: redis.Redis, provider: str
) -> None:
    bucket = TokenBucket(redis_client, provider, rate=10, burst=5)

    assert bucket.acquire(3).granted == 3
    refused = bucket.acquire(3)  # 2 left: a 3-part SMS waits for one more
    assert refused.granted == 0
    assert 0.07 <= refused.wait <= 0.1


def test_request_larger_than_burst_waits_for_a_full_bucket_not_forever(
    redis_client: redis.Redis,
    provider: str,
) -> None:
    bucket = TokenBucket(redis_client, provider, rate=10, burst=5)
    assert bucket.acquire(2).granted == 2

    not_yet = bucket.acquire(12)

    assert not_yet.granted == 0
    assert 0.15 <= not_yet.wait <= 0.2  # 2 tokens to a full bucket, at 10/s


def test_request_larger_than_burst_leaves_debt_that_later_callers_repay(
    redis_client: redis.Redis,
    provider: str,
) -> None:
    bucket = TokenBucket(redis_client, provider, rate=10, burst=5)

    assert bucket.acquire(12).granted == 12  # a full bucket, and 7 taken ahead of time

    assert -7.0 <= bucket.state().tokens <= -6.8
    assert 0.7 <= bucket.acquire(1).wait <= 0.8  # repay 7, then 1 more, at 10/s


async def test_requests_larger_than_burst_keep_the_rate_over_time(
    redis_client: redis.Redis,
    provider: str,
) -> None:
    bucket = TokenBucket(redis_client, provider, rate=200, burst=5)
    start = time.monotonic()
    taken = 0
    while time.monotonic() - start < 0.25:
        while not (grant := bucket.acquire(12)).granted:  # never starves
            assert grant.wait <= 1.0
            await asyncio.sleep(grant.wait)
        taken += 12
    elapsed = time.monotonic() - start

    # The first 12 came from a full bucket (5) and debt (7); the rest at 200/s.
    assert taken <= 12 + 200 * elapsed + 1
    assert taken >= 0.7 * 200 * elapsed  # and the waits were not much longer


def test_penalize_halves_the_rate_and_never_goes_below_min_factor(
    redis_client: redis.Redis,
    provider: str,
) -> None:
    bucket = TokenBucket(
        redis_client, provider, rate=10, burst=5, recovery=0.01, min_factor=0.2, penalty_hold=0
    )
    drain(bucket)
    assert 0.08 <= bucket.acquire(1).wait <= 0.1  # 1 token at 10/s

    assert bucket.penalize() == 0.5
    assert bucket.state().rate == pytest.approx(5, abs=0.01)
    assert 0.16 <= bucket.acquire(1).wait <= 0.2  # 1 token at 5/s

    factors = [bucket.penalize() for _ in range(5)]
    assert factors[:2] == pytest.approx([0.25, 0.2], abs=1e-4)
    assert all(f >= 0.2 for f in factors)
    assert factors[-1] == pytest.approx(0.2, abs=1e-4)


def test_a_burst_of_throttled_answers_cuts_the_rate_once_per_hold(
    redis_client: redis.Redis, provider: str
) -> None:
    """Regression (issue 12, the demo): 20 code-7 answers to one overfull
    second's requests took the rate from 400/s to min_factor at once."""
    bucket = TokenBucket(
        redis_client, provider, rate=400, burst=400, recovery=0.01, penalty_hold=0.2
    )
    factors = [bucket.penalize() for _ in range(20)]
    assert factors == pytest.approx([0.5] * 20, abs=1e-3)  # one cut, fleet-wide
    other_worker = TokenBucket(
        redis_client, provider, rate=400, burst=400, recovery=0.01, penalty_hold=0.2
    )
    assert other_worker.penalize() == pytest.approx(0.5, abs=1e-3)
    time.sleep(0.25)
    assert bucket.penalize() == pytest.approx(0.25, abs=1e-2)  # still throttled: cut again


def test_factor_recovers_toward_full_rate(redis_client: redis.Redis, provider: str) -> None:
    slow = TokenBucket(redis_client, f"{provider}-slow", rate=100, burst=5, recovery=1.0)
    fast = TokenBucket(redis_client, f"{provider}-fast", rate=100, burst=5, recovery=20.0)
    assert slow.penalize() == 0.5
    assert fast.penalize() == 0.5

    time.sleep(0.1)

    assert 0.59 <= slow.state().factor <= 0.7  # +1.0/s for 0.1 s
    assert fast.state().factor == 1.0  # +20/s: back at full rate, and no further


def test_state_is_stored_as_integers_with_a_ttl(redis_client: redis.Redis, provider: str) -> None:
    bucket = TokenBucket(redis_client, provider, rate=3, burst=7, recovery=0.3)
    bucket.acquire(7)
    bucket.penalize()
    bucket.refund(1)

    stored = redis_client.hgetall(bucket_key(provider))

    assert {k.decode() for k in stored} == {"tokens", "ts", "factor", "cut"}
    for value in stored.values():
        int(value)  # no "1.5", no "1e+15"
    assert 60_000 - 1_000 < redis_client.pttl(bucket_key(provider)) <= 60_000


def test_ttl_outlasts_the_time_an_idle_bucket_needs_to_refill(
    redis_client: redis.Redis, provider: str
) -> None:
    bucket = TokenBucket(redis_client, provider, rate=1, burst=100, recovery=0.01)
    drain(bucket)
    bucket.penalize()

    # factor 0.5 → 1 takes 50 s; 100 tokens at (at most) 1/s take 100 s more.
    assert redis_client.pttl(bucket_key(provider)) >= 150_000


def test_state_of_a_missing_bucket_is_full_and_creates_no_key(
    redis_client: redis.Redis, provider: str
) -> None:
    state = TokenBucket(redis_client, provider, rate=10, burst=5).state()

    assert (state.tokens, state.factor, state.rate, state.burst) == (5.0, 1.0, 10.0, 5)
    assert redis_client.exists(bucket_key(provider)) == 0


def test_a_changed_rate_applies_at_the_next_call(redis_client: redis.Redis, provider: str) -> None:
    before = TokenBucket(redis_client, provider, rate=10, burst=5)
    drain(before)
    assert 0.09 <= before.acquire(1).wait <= 0.1

    after = TokenBucket(redis_client, provider, rate=1000, burst=5)  # providers file edited

    assert after.acquire(1).wait <= 0.001
    assert after.state().rate == 1000


def test_invalid_arguments_are_refused(redis_client: redis.Redis, provider: str) -> None:
    bucket = TokenBucket(redis_client, provider, rate=10, burst=5)
    with pytest.raises(ValueError):
        bucket.acquire(0)
    with pytest.raises(ValueError):
        bucket.acquire(2, minimum=3)
    with pytest.raises(ValueError):
        bucket.refund(-1)
    bad_settings: list[dict[str, Any]] = [
        {"rate": 0.0},
        {"rate": float("inf")},
        {"burst": 0},
        {"decrease": 1.0},
        {"recovery": 0.0},
        {"min_factor": 0.0},
    ]
    for bad in bad_settings:
        with pytest.raises(ValueError):
            TokenBucket(redis_client, provider, **{"rate": 10, "burst": 5, **bad})


# --- many processes, one rate --------------------------------------------------

# Run as separate interpreters (subprocess): multiprocessing's "spawn" would
# have to import this test module by name, and "fork" from a threaded pytest
# process is deprecated. Each process times every grant from before the call to after it returns, so
# the moment Redis ran the script is known to lie in that interval.
_HAMMER = """
import json, sys, time
import redis
from worker.throttle import TokenBucket

url, provider, start, end = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
bucket = TokenBucket(redis.Redis.from_url(url), provider, rate=50, burst=5)
bucket.state()  # connect and load the script before the clock starts
time.sleep(max(0.0, start - time.time()))
grants = []
while (before := time.time()) < end:
    if bucket.acquire(1).granted:
        grants.append((before, time.time()))
json.dump(grants, sys.stdout)
"""


@pytest.mark.integration
def test_four_processes_share_one_rate(real_redis_url: str) -> None:
    """Celery's rate_limit is per process and would let these four send 4× the rate."""
    rate, burst, seconds, processes = 50, 5, 10.0, 4
    provider = f"test-four-processes-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(real_redis_url)
    client.delete(bucket_key(provider))
    start = time.time() + 2.0  # every process imported and connected by then
    end = start + seconds
    root = Path(__file__).resolve().parents[2]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _HAMMER, real_redis_url, provider, str(start), str(end)],
            cwd=root,
            stdout=subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    try:
        outputs = [w.communicate(timeout=seconds + 30)[0] for w in workers]
    finally:
        for w in workers:
            w.kill()
        client.delete(bucket_key(provider))
        client.close()
    assert [w.returncode for w in workers] == [0] * processes
    per_process = [json.loads(out) for out in outputs]
    grants = sorted((b, a) for grants in per_process for b, a in grants)

    assert all(per_process), "every process got tokens"
    expected = burst + rate * seconds  # a full bucket, then the rate
    assert abs(len(grants) - expected) <= 0.05 * expected, len(grants)

    # In any one second the bucket can give at most what it held (≤ burst) plus
    # one second of refill. Count the grants that surely ran in [b, b + 1 s).
    busiest = max(sum(1 for b2, a2 in grants if b <= b2 and a2 < b + 1.0) for b, _ in grants)
    assert busiest <= rate + burst, busiest
    assert busiest >= rate, busiest  # the windows measured something


def test_paused_flags_reads_every_account_in_one_call(
    redis_client: redis.Redis, provider: str
) -> None:
    pause_provider(redis_client, f"{provider}-b")
    assert paused_flags(redis_client, [f"{provider}-a", f"{provider}-b"]) == [False, True]
    bucket = TokenBucket(redis_client, f"{provider}-b", rate=10, burst=5)
    grant = bucket.acquire(1)  # the bucket's own script sees the flag
    assert grant.paused and grant.granted == 0
    resume_provider(redis_client, f"{provider}-b")
    assert paused_flags(redis_client, [f"{provider}-b"]) == [False]
    assert bucket.acquire(1).granted == 1
