"""The demo's measure of a bucket kept busy (smsq/demo/bucket_use.py)."""

from __future__ import annotations

from smsq.demo.bucket_use import Sample, bucket_use, used_per_second

T0 = 1_800_000_000


def samples(seconds: int, *, rate: float = 100, queued: int = 1000) -> list[Sample]:
    """Every half second from T0, as the live view samples."""
    return [Sample(T0 + i / 2, rate, queued) for i in range(seconds * 2)]


def test_a_bucket_used_fully_scores_one_in_every_window() -> None:
    use = bucket_use({T0 + s: 100 for s in range(20)}, samples(20))
    assert use["windows"] == 20 - 1 - 5  # whole windows between the first and last sample
    assert use["weakest"] == 1.0 and use["median"] == 1.0


def test_an_idle_second_shows_in_the_weakest_window_and_when() -> None:
    used = {T0 + s: 100 for s in range(20)}
    used[T0 + 10] = 0
    use = bucket_use(used, samples(20))
    assert use["weakest"] == 0.8  # 400 of 500
    assert T0 + 6 <= use["weakest_at"] <= T0 + 10


def test_the_allowed_rate_is_the_buckets_current_one() -> None:
    # Halved by AIMD at 10 s: 50/s is then all that is allowed.
    slowed = [Sample(s.at, 100 if s.at < T0 + 10 else 50, 1000) for s in samples(20)]
    used = {T0 + s: 100 if s < 10 else 50 for s in range(20)}
    assert bucket_use(used, slowed)["weakest"] == 1.0


def test_windows_without_a_seconds_work_waiting_or_touching_a_fault_are_left_out() -> None:
    tail = [Sample(s.at, 100, 1000 if s.at < T0 + 12 else 30) for s in samples(20)]
    used = {T0 + s: 100 if s < 12 else 30 for s in range(20)}
    assert bucket_use(used, tail)["weakest"] == 1.0  # the tail is not counted
    faulty = {T0 + s: 0 if 8 <= s < 10 else 100 for s in range(20)}
    assert bucket_use(faulty, samples(20), skip=[(T0 + 8, T0 + 10)])["weakest"] == 1.0
    assert bucket_use({}, [])["windows"] == 0


def test_refused_requests_spent_tokens_too() -> None:
    stats = {"per_second": {str(T0): 95}, "refused_per_second": {str(T0): 5, str(T0 + 1): 2}}
    assert used_per_second(stats) == {T0: 100, T0 + 1: 2}
