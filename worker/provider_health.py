"""A circuit breaker per provider account, shared by every worker process.

A provider that is down must not use up its messages' attempts, nor be
hammered. Each account has a health state in Redis (``provider_health.lua``,
whose header documents keys, arguments and replies; one atomic script timed
by Redis's clock):

- **closed** (normal): every result of a send is recorded. It **opens** on
  ``failures`` consecutive transport failures (connection refused, DNS, TLS,
  a read timeout: :func:`classify`) or when, over a window of ``window``
  seconds with at least ``min_answers`` answers, a share of ``share`` or more
  were HTTP 5xx without a readable vendor error (a bare 503 included). A
  readable vendor code (6 and 7 included) is an answer, never a failure.
- **open**: no worker sends to the account. Claimed rows are given back
  (``queued``, the attempt returned) and wait; their validity still ends
  them. Every ``probe_interval`` seconds one worker of the fleet (a lease in
  Redis) sends one real message as a **probe**, not counted as an attempt.
- **half-open**: the probe is out. A readable answer closes the breaker; a
  failure opens it again until the next probe.

Going down (closed to open) and coming back (a probe closing it) are logged
and appended, in the same atomic call, to the fleet's events
(:mod:`worker.fleet_events`, ``smsq fleet events``); a failed probe is not an
event.

A message whose read timed out stays ``unknown`` as always (it may have been
sent); the breaker only counts it. Results that arrive after the breaker
opened (requests in flight at that moment) are not counted as attempts
either: :func:`is_outage_failure` tells the sender which to give back.
"""

from __future__ import annotations

import datetime as dt
import math
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib.resources import files
from typing import Final

import redis
import structlog
from redis.commands.core import Script

from providers.base import Accepted, Outcome, Rejected
from providers.errors import NoAnswer, OutcomeUnknown, TransportError
from smsq.core.names import FLEET_EVENTS_KEY, health_key, probe_key
from smsq.core.settings import Settings
from worker.fleet_events import EVENTS_KEPT

log = structlog.get_logger("smsq.provider_health")

_LUA: Final = (files("worker") / "provider_health.lua").read_text(encoding="utf-8")
_scripts: weakref.WeakKeyDictionary[redis.Redis, Script] = weakref.WeakKeyDictionary()


def _script_for(client: redis.Redis) -> Script:
    script = _scripts.get(client)
    if script is None:
        script = _scripts[client] = client.register_script(_LUA)
    return script


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class Kind(StrEnum):
    """What one send result says about the provider's health."""

    ANSWER = "answer"  # a readable answer, whatever the code
    TRANSPORT = "transport"  # no answer: never connected, or the read timed out
    BAD_5XX = "5xx"  # HTTP 5xx without a readable vendor error
    NONE = "none"  # says nothing about the provider (e.g. a bug inside smsq)


def classify(outcome: Outcome) -> Kind:
    if isinstance(outcome, Accepted):
        return Kind.ANSWER
    assert isinstance(outcome, Rejected)
    error = outcome.error
    if isinstance(error, TransportError | NoAnswer):
        return Kind.TRANSPORT
    if error.http_status is not None and error.http_status >= 500:
        return Kind.BAD_5XX
    if isinstance(error, OutcomeUnknown):
        return Kind.NONE  # "sending failed inside smsq": not the provider's doing
    return Kind.ANSWER


def is_outage_failure(outcome: Outcome) -> bool:
    """A failure that certainly did not send (never connected, bare 5xx): while the
    breaker is not closed, the sender gives such a row back instead of counting
    an attempt. A read timeout is not one: that message stays ``unknown``."""
    if not isinstance(outcome, Rejected):
        return False
    error = outcome.error
    if isinstance(error, TransportError):
        return True
    return error.http_status is not None and error.http_status >= 500


PEEK_FRESH = 1.0  # seconds a "closed" answer of holding() is trusted


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failures: int = 5
    share: float = 0.5
    min_answers: int = 20
    window: float = 10.0
    probe_interval: float = 5.0

    def __post_init__(self) -> None:
        if self.failures < 1 or self.min_answers < 1:
            raise ValueError("failures and min_answers must be >= 1")
        if not 0 < self.share <= 1:
            raise ValueError(f"share must be in (0, 1], got {self.share!r}")
        if not (math.isfinite(self.window) and self.window > 0):
            raise ValueError(f"window must be > 0 s, got {self.window!r}")
        if not (math.isfinite(self.probe_interval) and self.probe_interval > 0):
            raise ValueError(f"probe_interval must be > 0 s, got {self.probe_interval!r}")


@dataclass(frozen=True, slots=True)
class Gate:
    """The answer to :meth:`ProviderHealth.gate`."""

    send: bool
    """Closed: send as usual."""
    probe: bool
    """Open, and this caller holds the fleet's probe: send one message."""
    wait: float
    """Neither: seconds until the next probe may go out."""


@dataclass(frozen=True, slots=True)
class HealthState:
    """A breaker as operators see it."""

    state: BreakerState
    since: dt.datetime | None
    """When the current state began (open: when the outage began); None: never opened."""
    reason: str | None
    """Why it opened (None while closed)."""


class ProviderHealth:
    """The circuit breaker of one provider account; cheap, stateless, shared via Redis."""

    def __init__(
        self,
        client: redis.Redis,
        provider: str,
        settings: BreakerSettings | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.provider = provider
        self.settings = settings or BreakerSettings()
        self.keys = [health_key(provider), probe_key(provider), FLEET_EVENTS_KEY]
        self._script = _script_for(client)
        self._monotonic = monotonic
        self._hold_until = self._fresh_until = 0.0
        self.probe_due = False
        """The last :meth:`holding` found it open with its probe due (not closed):
        routing offers such an account one message, for the probe."""

    def gate(self) -> Gate:
        """May this caller send now? Takes the fleet's probe when one is due."""
        state, wait_ms = self._call("gate")
        if state == "closed":
            return Gate(send=True, probe=False, wait=0.0)
        if state == "probe":
            return Gate(send=False, probe=True, wait=0.0)
        return Gate(send=False, probe=False, wait=int(wait_ms) / 1000)

    def holding(self) -> float:
        """Seconds for which the breaker holds every message of the account
        (0: closed, or a probe is due). Reads only; a closed answer is
        trusted for :data:`PEEK_FRESH` seconds and an open one until its
        probe is due, so a worker asks Redis about once a second. Used
        before claiming, so held rows stay ``queued`` rather than being
        claimed and given back; :meth:`gate` stays the authority."""
        now = self._monotonic()
        if now < self._fresh_until:
            return max(0.0, self._hold_until - now)
        state, wait_ms = self._call("peek")
        return self._remember_peek(now, state, wait_ms)

    @property
    def peek_is_fresh(self) -> bool:
        """:meth:`holding` would answer without asking Redis."""
        return self._monotonic() < self._fresh_until

    def _remember_peek(self, now: float, state: str, wait_ms: int) -> float:
        self.probe_due = state == "probe"
        hold = int(wait_ms) / 1000 if state == "open" else 0.0
        self._hold_until = now + hold
        fresh = {"open": hold, "closed": PEEK_FRESH}.get(state, 0.0)  # a due probe: ask again
        self._fresh_until = now + fresh
        return hold

    def record(
        self, outcomes: Iterable[Outcome], *, probe: bool = False, one_request: bool = False
    ) -> BreakerState:
        """Count a chunk's results; return the state after them.

        ``one_request``: the results are those of one request carrying many
        numbers (brand), which counts once, not once per number.
        """
        counts = dict.fromkeys(Kind, 0)
        kinds = [classify(outcome) for outcome in outcomes]
        if one_request and kinds:
            worst = next(
                (k for k in (Kind.TRANSPORT, Kind.BAD_5XX, Kind.ANSWER) if k in kinds), None
            )
            kinds = [worst] if worst is not None else []
        for kind in kinds:
            counts[kind] += 1
        reply = self._script(
            keys=self.keys,
            args=[
                "record",
                *self._limits(),
                counts[Kind.ANSWER],
                counts[Kind.TRANSPORT],
                counts[Kind.BAD_5XX],
                "1" if probe else "0",
                self.provider,
                EVENTS_KEPT,
            ],
        )
        state = BreakerState(_text(reply[0]))
        if int(reply[1]):
            reason = _text(reply[2])
            if state is BreakerState.OPEN:
                log.warning(
                    "provider down: circuit breaker opened", provider=self.provider, reason=reason
                )
            else:
                log.warning(
                    "provider up: circuit breaker closed", provider=self.provider, reason=reason
                )
        return state

    def state(self) -> HealthState:
        """The breaker now; reads only."""
        reply = self._script(keys=self.keys, args=["state", *self._limits()])
        state, since, opened, reason = (_text(v) for v in reply)
        del opened
        return HealthState(
            state=BreakerState(state),
            since=dt.datetime.fromtimestamp(int(since) / 1000, dt.UTC) if since else None,
            reason=reason or None if state != "closed" else None,
        )

    def _limits(self) -> list[str]:
        s = self.settings
        return [
            str(s.failures),
            repr(s.share),
            str(s.min_answers),
            str(math.ceil(s.window * 1000)),
            str(math.ceil(s.probe_interval * 1000)),
        ]

    def _call(self, mode: str) -> tuple[str, int]:
        reply = self._script(keys=self.keys, args=[mode, *self._limits()])
        return _text(reply[0]), int(reply[1])


def holding_all(breakers: Sequence[ProviderHealth]) -> list[float]:
    """:meth:`ProviderHealth.holding` of each, in one round trip to Redis
    (a pipeline) for those whose last answer is stale, instead of one each:
    the sender asks before every batch, and an OTP should not wait for a
    round trip per account of the fleet."""
    stale = [b for b in breakers if not b.peek_is_fresh]
    if any(b.client is not stale[0].client for b in stale):  # not one fleet's Redis
        return [b.holding() for b in breakers]
    if stale:
        pipe = stale[0].client.pipeline(transaction=False)
        for breaker in stale:
            breaker._script(keys=breaker.keys, args=["peek", *breaker._limits()], client=pipe)
        now = stale[0]._monotonic()
        for breaker, reply in zip(stale, pipe.execute(), strict=True):
            breaker._remember_peek(now, _text(reply[0]), int(reply[1]))
    return [b.holding() for b in breakers]


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def breaker_settings(settings: Settings) -> BreakerSettings:
    """The breaker's thresholds from ``SMSQ_BREAKER_*``."""
    return BreakerSettings(
        failures=settings.breaker_failures,
        share=settings.breaker_error_share,
        min_answers=settings.breaker_min_answers,
        window=settings.breaker_window,
        probe_interval=settings.breaker_probe_interval,
    )


def provider_breakers(settings: Settings) -> Callable[[], list[ProviderHealth]]:
    """Every configured account's breaker, for a reader such as the metrics
    endpoint; the Redis client is made on the first call (short timeouts: a
    scrape must not hang on a dead Redis)."""
    made: list[redis.Redis] = []

    def breakers() -> list[ProviderHealth]:
        if not made:
            made.append(
                redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
            )
        limits = breaker_settings(settings)
        return [ProviderHealth(made[0], name, limits) for name in settings.providers]

    return breakers
