"""When a retryable provider answer is tried again: the one place for it.

Codes 6 (queue full) and 7 (throttled), HTTP 5xx and requests that never left
are retried later with exponential backoff and *full jitter* (a uniformly
random wait between 0 and the exponential ceiling, so a fleet that was refused
at the same moment does not come back at the same moment). A ``Retry-After``
from the provider is a floor. Nothing retries forever: the message's validity
and the attempt cap both end it.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    RETRY = "retry"
    EXPIRE = "expire"  # validity would pass before the next attempt
    GIVE_UP = "give_up"  # attempt cap reached


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base: float = 1.0  # seconds, ceiling of the first wait
    cap: float = 60.0  # seconds, longest wait
    max_attempts: int = 10

    def backoff(
        self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        # The exponent is bounded: 2**1025 overflows a float, and the cap is
        # reached long before 2**64 whatever the base.
        ceiling = min(self.cap, self.base * 2 ** min(64, max(0, attempt - 1)))
        wait = (rng or random).uniform(0, ceiling)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.cap))
        return wait

    def decide(
        self,
        *,
        attempts: int,
        wait: float,
        now: dt.datetime,
        expires_at: dt.datetime | None,
    ) -> Verdict:
        if expires_at is not None and now + dt.timedelta(seconds=wait) >= expires_at:
            return Verdict.EXPIRE
        if attempts >= self.max_attempts:
            return Verdict.GIVE_UP
        return Verdict.RETRY
