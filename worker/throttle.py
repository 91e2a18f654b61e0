"""One token bucket per provider account, shared by every worker process.

Celery's ``rate_limit`` counts per worker process, so N processes would send N
times a provider's rate. The bucket lives in Redis instead, and every operation
is one atomic Lua script (``token_bucket.lua``, whose header documents KEYS,
ARGV and the return values) timed by Redis's own clock, so processes on many
hosts share one rate without racing and without trusting their clocks.

A token is one SMS segment. The rate adapts (AIMD): when the provider answers
code 7 ("throttled") the worker calls :meth:`TokenBucket.penalize`, which
multiplies a shared factor by ``decrease``; between calls the factor climbs
back by ``recovery`` per second, so the fleet backs off together and returns
to the configured rate on its own.

The rate and burst travel with every call rather than being stored, so an
edited providers file takes effect at the next call, with no key to delete.

A request larger than ``burst`` could never find that many tokens in the
bucket. Rather than clamp it (which would send faster than the rate) or refuse
it (which would starve it), such a request is granted when the bucket is full
and leaves the bucket in debt: later callers wait until the debt is repaid, so
the rate over time still holds.

**OTPs first.** The campaign and transactional lanes leave a small reserve
in the bucket (:meth:`TokenBucket.otp_reserve`: ``SMSQ_OTP_RESERVE`` seconds
of the rate, at most half the burst) that only the OTP lane may take. While a
campaign saturates the account the bucket hovers at the reserve instead of at
zero, so an OTP finds a token at once rather than queueing behind the
campaign's next grant, and the refill goes to the reserve first. The
campaign loses no rate: it only never takes those last few tokens.

An operator can **pause** a provider (``smsq fleet pause``): a key in Redis
(``smsq.core.names.paused_key``) that :meth:`TokenBucket.acquire` checks before
every grant, so the whole fleet stops taking that provider's tokens at its
next request. A paused grant is "no tokens, wait :data:`PAUSED_WAIT`", which
the sender already handles: the rows go back to ``queued`` (not counted as an
attempt) and are re-enqueued with that countdown, so a paused provider holds no
worker slot and its messages are neither failed nor lost.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Final

import redis
from redis.commands.core import Script

from smsq.core.names import bucket_key, paused_key

# Micro-tokens per token and parts per million per factor 1.0: the script keeps
# its state as integers in these units.
_UNIT: Final = 1_000_000

# The wait a paused bucket reports. Longer than the sender's longest wait for
# tokens (``worker.sending.MAX_TOKEN_WAIT``, 5 s), so a batch gives its rows
# back at once instead of sleeping; short enough that after ``resume`` the
# rows go out within about this long.
PAUSED_WAIT: Final = 10.0

# Seconds after a cut of the rate (code 7) during which further "throttled"
# answers cut nothing more: they answer requests sent before the cut. About
# one round trip of a provider counting "per second".
PENALTY_HOLD: Final = 1.0

_LUA: Final = (files("worker") / "token_bucket.lua").read_text(encoding="utf-8")

# One registered script per client: ``Script`` hashes the source once and
# handles EVALSHA, falling back to loading the script after NOSCRIPT (a Redis
# restart or failover). Weak keys, so a closed client's entry goes with it.
_scripts: weakref.WeakKeyDictionary[redis.Redis, Script] = weakref.WeakKeyDictionary()


def _script_for(client: redis.Redis) -> Script:
    script = _scripts.get(client)
    if script is None:
        script = _scripts[client] = client.register_script(_LUA)
    return script


@dataclass(frozen=True, slots=True)
class Grant:
    """The answer to :meth:`TokenBucket.acquire`."""

    granted: int
    """Tokens taken (0 = none). Give back unused ones with :meth:`TokenBucket.refund`."""
    wait: float
    """Seconds until ``minimum`` tokens are available; 0.0 when ``granted > 0``."""
    factor: float
    """The current AIMD factor (1.0 = the full configured rate)."""
    paused: bool = False
    """An operator paused this provider: nothing is granted until ``resume``."""


@dataclass(frozen=True, slots=True)
class BucketState:
    """A bucket as operators see it, brought up to the current time."""

    tokens: float
    """Tokens available now; negative while a request larger than burst is repaid."""
    factor: float
    """The AIMD factor (1.0 = the full configured rate)."""
    rate: float
    """The effective rate, tokens per second: configured rate × factor."""
    burst: int
    """The bucket's capacity, tokens."""


class TokenBucket:
    """The shared send rate of one provider account (one token = one SMS segment).

    Cheap to create: it holds no state of its own, so a worker may build one
    per task from the providers file. All instances naming the same provider,
    in any process, share the one bucket in Redis.
    """

    def __init__(
        self,
        client: redis.Redis,
        provider: str,
        *,
        rate: float,
        burst: int,
        decrease: float = 0.5,
        recovery: float = 0.1,
        min_factor: float = 0.05,
        penalty_hold: float = PENALTY_HOLD,
    ) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be > 0 tokens per second, got {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1 token, got {burst!r}")
        if not 0 < decrease < 1:
            raise ValueError(f"decrease must be between 0 and 1, got {decrease!r}")
        if not (math.isfinite(recovery) and recovery > 0):
            raise ValueError(f"recovery must be > 0 per second, got {recovery!r}")
        if not 0 < min_factor <= 1:
            raise ValueError(f"min_factor must be in (0, 1], got {min_factor!r}")
        self.provider = provider
        self.key = bucket_key(provider)
        self.paused_key = paused_key(provider)
        self.client = client
        self.rate = float(rate)
        self.burst = int(burst)
        self.decrease = float(decrease)
        self.recovery = float(recovery)
        self.min_factor = float(min_factor)
        self.penalty_hold = float(penalty_hold)
        self._script = _script_for(client)

    def acquire(self, tokens: int, minimum: int | None = None, *, reserve: int = 0) -> Grant:
        """Take up to ``tokens``, but only if at least ``minimum`` are available.

        ``minimum`` defaults to ``tokens`` (all or nothing: one message's
        segments). A smaller minimum suits a batch that can send part now and
        the rest later. A ``minimum`` above ``burst`` is granted in full once
        the bucket is full, leaving it in debt (see the module docstring).
        ``reserve`` tokens are left in the bucket for callers without one
        (the OTP lane: :meth:`otp_reserve`); it is capped below ``burst``.
        """
        if minimum is None:
            minimum = tokens
        if tokens < 1:
            raise ValueError(f"tokens must be >= 1, got {tokens!r}")
        if not 1 <= minimum <= tokens:
            raise ValueError(f"minimum must be between 1 and tokens ({tokens}), got {minimum!r}")
        if reserve < 0:
            raise ValueError(f"reserve must be >= 0, got {reserve!r}")
        reserve = min(reserve, self.burst - 1)
        granted, wait_ms, _, factor = self._call("acquire", tokens, minimum, reserve)
        if wait_ms < 0:  # the script found the pause flag
            return Grant(granted=0, wait=PAUSED_WAIT, factor=1.0, paused=True)
        return Grant(granted=granted, wait=wait_ms / 1000, factor=factor / _UNIT)

    def refund(self, tokens: int) -> None:
        """Give back tokens taken but not used (e.g. a batch smaller than granted).

        The bucket never fills beyond ``burst``, so a refund cannot create a burst.
        """
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0, got {tokens!r}")
        if tokens:
            self._call("refund", tokens)

    def penalize(self) -> float:
        """Slow the whole fleet after a provider's "throttled" answer (code 7).

        Multiplies the factor by ``decrease`` (not below ``min_factor``) and
        returns the new factor; it climbs back by ``recovery`` per second.
        At most one cut per ``penalty_hold`` seconds, fleet-wide: the burst
        of code 7 answers to the requests of one overfull second is one
        signal, not one per request (see token_bucket.lua).
        """
        _, _, _, factor = self._call("penalize")
        return factor / _UNIT

    def is_paused(self) -> bool:
        """True while an operator has paused this provider (``smsq fleet pause``)."""
        return bool(self.client.exists(self.paused_key))

    def state(self) -> BucketState:
        """The bucket now, for operators; reads only, never creates the key."""
        _, _, tokens, factor = self._call("state")
        return BucketState(
            tokens=tokens / _UNIT,
            factor=factor / _UNIT,
            rate=self.rate * factor / _UNIT,
            burst=self.burst,
        )

    def otp_reserve(self, seconds: float) -> int:
        """The tokens the other lanes leave for OTPs: ``seconds`` of the
        configured rate, at least 1, at most half the burst (0: none)."""
        if seconds <= 0:
            return 0
        return min(self.burst // 2, max(1, math.ceil(self.rate * seconds)))

    def _call(
        self, mode: str, tokens: int = 0, minimum: int = 0, reserve: int = 0
    ) -> tuple[int, int, int, int]:
        reply = self._script(
            keys=[self.key, self.paused_key],
            args=[
                mode,
                repr(self.rate),
                self.burst,
                repr(self.decrease),
                repr(self.recovery),
                repr(self.min_factor),
                tokens,
                minimum,
                reserve,
                int(self.penalty_hold * 1000),
            ],
        )
        granted, wait_ms, micro_tokens, factor_ppm = (int(v) for v in reply)
        return granted, wait_ms, micro_tokens, factor_ppm


def pause_provider(client: redis.Redis, provider: str) -> bool:
    """Stop the fleet taking ``provider``'s tokens; False when it was already paused.

    No expiry: a pause lasts until :func:`resume_provider`, also across worker
    restarts (it lives in the throttle Redis, which should persist).
    """
    return bool(client.set(paused_key(provider), "1", nx=True))


def paused_flags(client: redis.Redis, providers: Sequence[str]) -> list[bool]:
    """Whether each of ``providers`` is paused, in one round trip (MGET)."""
    values = client.mget([paused_key(p) for p in providers])
    return [value is not None for value in values]


def resume_provider(client: redis.Redis, provider: str) -> bool:
    """Let the fleet take ``provider``'s tokens again; False when it was not paused."""
    return bool(client.delete(paused_key(provider)))
