"""One delivery attempt of a status webhook, and what happens next.

- 2xx → ``delivered``.
- Network error, timeout, a name that does not resolve, 5xx, 429 → retried
  with full-jitter exponential backoff (``BACKOFF_BASE`` … ``BACKOFF_CAP``,
  never above the broker's visibility timeout; ``Retry-After`` is a floor),
  until the next try would fall past ``created_at + SMSQ_WEBHOOK_RETRY_FOR``:
  then ``failed``.
- 410 → the URL goes into ``disabled_webhook_endpoints``; this and every
  pending delivery to it → ``gone``.
- 3xx → ``failed``: redirects are not followed (one could point at a
  metadata address).
- Other 4xx → ``failed``: the endpoint refuses it; trying again will not help.
- A forbidden target or no signing secret → ``failed`` with the reason.

The attempt is claimed first with a conditional ``UPDATE`` (pending and due →
``attempts + 1``, ``next_attempt_at`` pushed out by a lease), so a task
delivered twice does nothing the second time; the result is written only
while the claim still holds (same ``attempts``). A retry is a new task with a
countdown, so no worker slot waits; the row keeps ``next_attempt_at`` so the
outbox job recovers a lost one.
"""

from __future__ import annotations

import datetime as dt
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import httpx
import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from models.tables import ApiKey, DisabledWebhookEndpoint, WebhookDelivery, utcnow
from smsq.core.netguard import BlockedTarget, Resolver, target_of
from smsq.core.settings import Settings
from worker.retry_policy import RetryPolicy, Verdict
from worker.webhooks.outbox import DeliveryStatus, insert_ignoring_conflicts
from worker.webhooks.sender import Answer, post_signed

log = structlog.get_logger("smsq.webhooks")

BACKOFF_BASE = 5.0  # seconds, ceiling of the first wait
BACKOFF_CAP = 3600.0  # seconds, longest wait
UNLIMITED = 2**31  # attempts: time (SMSQ_WEBHOOK_RETRY_FOR) ends the retries, not a count
NO_SECRET = "no signing secret"


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"
    GONE = "gone"
    SKIPPED = "skipped"  # not pending, not due, or claimed by another attempt


@dataclass(frozen=True, slots=True)
class AttemptResult:
    outcome: Outcome
    countdown: float | None = None  # RETRY: run again after this many seconds
    detail: str = ""


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    allow_http: bool = False
    allow_private: bool = False
    timeout: float = 10.0
    retry_for: float = 86_400.0
    fallback_secret: str | None = None  # signs webhooks of messages without a client
    backoff: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(
            base=BACKOFF_BASE, cap=BACKOFF_CAP, max_attempts=UNLIMITED
        )
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookConfig:
        secret = settings.webhook_secret
        # A countdown longer than the visibility timeout is redelivered early.
        cap = min(BACKOFF_CAP, settings.visibility_timeout * 0.9)
        return cls(
            allow_http=settings.webhook_allow_http,
            allow_private=settings.webhook_allow_private,
            timeout=settings.webhook_timeout,
            retry_for=settings.webhook_retry_for,
            fallback_secret=secret.get_secret_value() if secret is not None else None,
            backoff=RetryPolicy(base=min(BACKOFF_BASE, cap), cap=cap, max_attempts=UNLIMITED),
        )

    @property
    def lease(self) -> dt.timedelta:
        """How long a claimed attempt owns its row: a few timeouts (one per address)."""
        return dt.timedelta(seconds=5 * self.timeout + 60)


@dataclass
class DeliveryContext:
    sessions: sessionmaker[Session]
    client: httpx.Client
    config: WebhookConfig
    clock: Callable[[], dt.datetime] = utcnow
    rng: random.Random | None = None
    resolver: Resolver = socket.getaddrinfo


def deliver(ctx: DeliveryContext, delivery_id: str) -> AttemptResult:
    """Make one attempt at delivery ``delivery_id`` and record its result."""
    cfg = ctx.config
    with ctx.sessions() as session:
        row = _claim(session, delivery_id, now=ctx.clock(), lease=cfg.lease)
        if row is None:
            return AttemptResult(Outcome.SKIPPED)
        secret = _signing_secret(session, row.client_id, cfg.fallback_secret)
    log_ = log.bind(
        delivery_id=row.id, message_id=row.message_id, host=_host(row.url), attempt=row.attempts
    )
    if secret is None:
        log_.warning("webhook not sent: no signing secret for its client")
        result = AttemptResult(Outcome.FAILED, detail=NO_SECRET)
    else:
        result = _attempt(ctx, row, secret)
    with ctx.sessions() as session:
        _record(session, row, result, now=ctx.clock())
    if result.outcome is Outcome.DELIVERED:
        log_.info("webhook delivered", answer=result.detail)
    elif result.outcome is Outcome.RETRY:
        log_.info("webhook retry", error=result.detail, countdown=round(result.countdown or 0, 1))
    else:
        log_.warning("webhook " + result.outcome.value, error=result.detail)
    return result


def _attempt(ctx: DeliveryContext, row: WebhookDelivery, secret: str) -> AttemptResult:
    cfg = ctx.config
    now = ctx.clock()
    try:
        answer = post_signed(
            ctx.client,
            row.url,
            row.payload.encode(),
            webhook_id=row.id,
            secret=secret,
            now=now,
            timeout=cfg.timeout,
            allow_http=cfg.allow_http,
            allow_private=cfg.allow_private,
            resolver=ctx.resolver,
        )
    except BlockedTarget as exc:
        return AttemptResult(Outcome.FAILED, detail=f"blocked: {exc}")
    except ValueError as exc:  # an unreadable signing secret
        return AttemptResult(Outcome.FAILED, detail=str(exc))
    except httpx.TimeoutException as exc:
        return _retry_or_give_up(ctx, row, f"timeout ({type(exc).__name__})", None)
    except httpx.TransportError as exc:
        return _retry_or_give_up(ctx, row, f"network error ({type(exc).__name__})", None)
    except OSError as exc:  # the name did not resolve
        return _retry_or_give_up(ctx, row, f"name resolution failed ({exc})", None)
    return _judge(ctx, row, answer)


def _judge(ctx: DeliveryContext, row: WebhookDelivery, answer: Answer) -> AttemptResult:
    code = answer.status_code
    detail = f"HTTP {code}"
    if 200 <= code < 300:
        return AttemptResult(Outcome.DELIVERED, detail=detail)
    if code == 410:
        return AttemptResult(Outcome.GONE, detail="HTTP 410: endpoint disabled")
    if code == 429 or code >= 500:
        return _retry_or_give_up(ctx, row, detail, answer.retry_after)
    if 300 <= code < 400:
        return AttemptResult(Outcome.FAILED, detail=f"{detail}: redirects are not followed")
    return AttemptResult(Outcome.FAILED, detail=detail)


def _retry_or_give_up(
    ctx: DeliveryContext, row: WebhookDelivery, detail: str, retry_after: float | None
) -> AttemptResult:
    policy = ctx.config.backoff
    wait = policy.backoff(row.attempts, retry_after, ctx.rng)
    deadline = row.created_at + dt.timedelta(seconds=ctx.config.retry_for)
    verdict = policy.decide(attempts=row.attempts, wait=wait, now=ctx.clock(), expires_at=deadline)
    if verdict is not Verdict.RETRY:
        return AttemptResult(
            Outcome.FAILED, detail=f"{detail}; gave up after {row.attempts} attempts"
        )
    return AttemptResult(Outcome.RETRY, countdown=wait, detail=detail)


def _claim(
    session: Session, delivery_id: str, *, now: dt.datetime, lease: dt.timedelta
) -> WebhookDelivery | None:
    claimed = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        .values(attempts=WebhookDelivery.attempts + 1, next_attempt_at=now + lease)
        .returning(WebhookDelivery.id)
    ).first()
    session.commit()
    if claimed is None:
        return None
    return session.get(WebhookDelivery, delivery_id, populate_existing=True)


def _signing_secret(session: Session, client_id: str, fallback: str | None) -> str | None:
    """The client's secret; messages sent with the Python API (no client) use the setting."""
    if client_id == "":
        return fallback
    return session.scalar(select(ApiKey.webhook_secret).where(ApiKey.id == client_id))


def _record(
    session: Session, row: WebhookDelivery, result: AttemptResult, *, now: dt.datetime
) -> None:
    ours = (
        WebhookDelivery.id == row.id,
        WebhookDelivery.status == DeliveryStatus.PENDING,
        WebhookDelivery.attempts == row.attempts,  # the claim still holds
    )
    values: dict[str, object] = {"last_error": result.detail or None}
    if result.outcome is Outcome.DELIVERED:
        values.update(status=DeliveryStatus.DELIVERED, delivered_at=now, last_error=None)
    elif result.outcome is Outcome.RETRY:
        values["next_attempt_at"] = now + dt.timedelta(seconds=result.countdown or 0)
    elif result.outcome is Outcome.FAILED:
        values["status"] = DeliveryStatus.FAILED
    elif result.outcome is Outcome.GONE:
        _disable_endpoint(session, row.url, now=now)
        values["status"] = DeliveryStatus.GONE
    session.execute(update(WebhookDelivery).where(*ours).values(values))
    session.commit()


def _disable_endpoint(session: Session, url: str, *, now: dt.datetime) -> None:
    """Remember the URL as gone and stop every delivery still waiting for it."""
    insert_ignoring_conflicts(
        session,
        DisabledWebhookEndpoint,
        [{"url": url, "reason": "answered 410 Gone", "disabled_at": now}],
        conflict=["url"],
    )
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.url == url, WebhookDelivery.status == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.GONE, last_error="endpoint answered 410 Gone")
    )


def _host(url: str) -> str:
    """The host of a URL, for logs: a path or query may hold a customer's token."""
    try:
        return target_of(url, allow_http=True)[0]
    except ValueError:
        return "?"
