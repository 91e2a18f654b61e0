"""How much of an account's token bucket was used while work was waiting.

Issue 12's measure of "the bucket kept busy": over every window of
``WINDOW`` whole seconds in which the campaign had at least a second of its
account's rate queued, what the provider saw (numbers accepted plus requests
refused with a vendor error: each cost a token) against what the bucket
allowed (its *current* rate, after AIMD, as sampled). Windows that overlap
an injected fault are left out, as are those without enough waiting work
(the start while the CSV is still being written, the tail of retries).

Pure functions over samples, so the demo and tests share them.
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

WINDOW = 5  # seconds


@dataclass(frozen=True)
class Sample:
    """The account at one moment: Unix time, its bucket's current rate
    (per second), and the campaign's rows waiting to be sent."""

    at: float
    rate: float
    queued: int


def bucket_use(
    used_per_second: dict[int, int],
    samples: list[Sample],
    *,
    skip: Sequence[tuple[float, float]] = (),
    window: int = WINDOW,
) -> dict[str, Any]:
    """Each counted window's share of the allowed rate; the weakest and the median.

    ``used_per_second``: tokens seen spent at the provider, by Unix second.
    ``skip``: (from, to) Unix times of faults; a window touching one is not
    counted. A window is counted when the samples within it all had at
    least one second of the rate queued (and there is at least one).
    """
    samples = sorted(samples, key=lambda s: s.at)
    times = [s.at for s in samples]
    shares: list[tuple[int, float]] = []
    if samples:
        first, last = int(samples[0].at) + 1, int(samples[-1].at) - window
        for start in range(first, last + 1):
            end = start + window
            if any(a < end and b > start for a, b in skip):
                continue
            inside = samples[bisect.bisect_left(times, start) : bisect.bisect_left(times, end)]
            if not inside or any(s.queued < s.rate for s in inside):
                continue
            allowed = sum(_rate_in(samples, times, second) for second in range(start, end))
            used = sum(used_per_second.get(second, 0) for second in range(start, end))
            if allowed > 0:
                shares.append((start, used / allowed))
    if not shares:
        return {"windows": 0, "weakest": None, "weakest_at": None, "median": None}
    weakest_at, weakest = min(shares, key=lambda pair: pair[1])
    return {
        "windows": len(shares),
        "weakest": round(weakest, 4),
        "weakest_at": weakest_at,
        "median": round(statistics.median(share for _, share in shares), 4),
    }


def _rate_in(samples: list[Sample], times: list[float], second: int) -> float:
    """The rate over one second: the mean of the rates in force at its
    quarter and three-quarter marks (samples come about twice a second, so
    a change of rate in the middle of a second counts half)."""
    return (_rate_at(samples, times, second + 0.25) + _rate_at(samples, times, second + 0.75)) / 2


def _rate_at(samples: list[Sample], times: list[float], moment: float) -> float:
    """The rate of the last sample at or before ``moment`` (the first, before any)."""
    i = bisect.bisect_right(times, moment) - 1
    return samples[max(i, 0)].rate


def used_per_second(simulator_stats: dict[str, Any]) -> dict[int, int]:
    """Tokens spent at one simulator, by second: accepted numbers plus refused requests."""
    used: dict[int, int] = {}
    for key in ("per_second", "refused_per_second"):
        for second, count in simulator_stats.get(key, {}).items():
            used[int(second)] = used.get(int(second), 0) + int(count)
    return used
