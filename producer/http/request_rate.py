"""How often a client may call: a per-API-key request rate limit, counted in
Redis (what a request may look like is :mod:`producer.http.request_shape`).

Fixed one-second windows: each request does ``INCR`` + ``EXPIRE`` on
``smsq:api-rate:<client id>:<unix second>`` in one pipeline (one round
trip), so every API process shares the count. A key may carry its own
``rate_limit``; without one, ``SMSQ_API_RATE_LIMIT`` applies. Over the limit
the answer is 429 ``rate_limited`` with ``Retry-After`` (whole seconds, at
least 1: the window ends within the second).

Fixed windows allow up to twice the limit across a window boundary; that is
fine for what this protects (the API and the database), and the provider's
own rate is enforced separately by the workers' token bucket.

**Fails open**: when Redis does not answer, requests go through and one
warning is logged (until Redis answers again). Refusing every request because
the counter is down would stop OTPs; sending stays throttled by the workers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis
import structlog

from smsq.core.names import api_rate_key

log = structlog.get_logger("smsq.http")

WINDOW_SECONDS = 1
# The counter outlives its window a little, so a slow clock does not reset it.
KEY_TTL_SECONDS = 2


class RateLimiter:
    """Counts requests per client; ``hit`` answers how long to wait, or None."""

    def __init__(
        self,
        client: Callable[[], redis.Redis],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()
        self._redis_down = False

    def hit(self, client_id: str, limit: int) -> int | None:
        """Count one request; None if allowed, else the ``Retry-After`` seconds."""
        window = int(self._clock()) // WINDOW_SECONDS
        key = api_rate_key(client_id, window)
        try:
            pipe = self._client().pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, KEY_TTL_SECONDS)
            count, _ = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._note_down(exc)
            return None
        self._note_up()
        if int(count) <= limit:
            return None
        return WINDOW_SECONDS

    def _note_down(self, exc: BaseException) -> None:
        with self._lock:
            if self._redis_down:
                return
            self._redis_down = True
        log.warning(
            "ratelimit.redis_down",
            effect="API requests are not rate-limited until Redis answers",
            error=type(exc).__name__,
        )

    def _note_up(self) -> None:
        if self._redis_down:
            with self._lock:
                self._redis_down = False
            log.info("ratelimit.redis_back")
