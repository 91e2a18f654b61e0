"""What an operator sees of the fleet and does to it (``smsq fleet``, ``GET /v1/fleet``).

Plain functions over a database session, the throttle Redis, the broker's
Redis and a Celery app, so the command line and the HTTP API share them and
tests need no broker:

- :func:`fleet_status`: workers alive and what they consume, each queue's
  depth and how long its oldest due message has waited, scheduled work, each
  provider's bucket (rate, tokens, paused) and circuit breaker (closed, open,
  half-open, since when: ``worker.provider_health``), send rates over 1 and 5 minutes,
  failures by provider code in the last hour, messages in ``unknown``. A part
  that cannot be read (the broker is down, no worker answers) is reported in
  ``problems``; the rest is still shown.
- :func:`pause` / :func:`resume`: the pause flag of a provider
  (``worker.throttle``); a paused bucket grants nothing, so workers give that
  provider's messages back as ``queued`` at their next request.
- :func:`find_retryable` / :func:`requeue`: an operator's re-queue of final
  messages (after a credit top-up, a provider fix).
- :func:`reconcile`: the sweeper, now (with the recovery of dead workers' rows first).
- :func:`purge_queue`: empty one broker queue; the rows stay ``queued`` and
  ``reconcile`` (or the next sweep) re-enqueues them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
import structlog
from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.orm import Session

from models.ledger import requeue_by_operator
from models.ledger.reports import drop_old_orphans, replay_orphans
from models.status import (
    OPERATOR_REQUEUE_FROM,
    CampaignStatus,
    MessageStatus,
    campaign_can_move,
)
from models.tables import Campaign, Message
from providers.registry import report_status_field
from smsq.core.names import (
    QUEUE_FOR_KIND,
    QUEUES,
)
from smsq.core.publisher import Publisher
from smsq.core.settings import Settings
from worker.broker import broker_data_lost, queue_depth
from worker.fleet_events import EventKind, FleetEvent, list_events, record
from worker.provider_health import BreakerState, HealthState, ProviderHealth, breaker_settings
from worker.recovery import Recovered, live_claims, recover
from worker.sweeper import sweep
from worker.throttle import TokenBucket, pause_provider, resume_provider
from worker.unknown_resend import dead_worker_wait

log = structlog.get_logger("smsq.fleet")

S = MessageStatus

# A report for a message we never stored is kept this long, then dropped.
ORPHAN_REPORT_LIFETIME = dt.timedelta(days=1)
ERRORS_WINDOW = dt.timedelta(hours=1)
INSPECT_TIMEOUT = 1.0  # seconds to wait for workers to answer ``active_queues``
RECENT_EVENTS = 5  # fleet events the status shows (``smsq fleet events`` lists more)

# --- status ------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    queues: list[str]


@dataclass(frozen=True)
class QueueInfo:
    name: str
    depth: int | None
    """Tasks waiting in the broker (None: the broker could not be read)."""
    due_messages: int
    """Rows ``queued`` and due now for this queue (the database's view)."""
    oldest_due_seconds: float | None
    """How long the oldest due row has been due (since its send time, retry
    time or creation); None when nothing is due. Large while the depth is 0:
    its broker message was lost, run ``smsq fleet reconcile``."""


@dataclass(frozen=True)
class ProviderInfo:
    name: str
    paused: bool | None
    configured_rate: float
    rate: float | None
    """Effective rate now (configured × AIMD factor), segments per second."""
    factor: float | None
    tokens: float | None
    burst: int
    sent_per_second_1m: float
    sent_per_second_5m: float
    errors_last_hour: dict[str, int]
    """Failed messages by provider code (``none``: failed without a code)."""
    breaker: str | None = None
    """The circuit breaker (``worker.provider_health``): ``closed``, ``open`` or
    ``half-open`` (a probe is out); None when the throttle store could not be read."""
    breaker_since: dt.datetime | None = None
    """When that state began (open, half-open: when the outage began); None:
    closed and never opened, or unknown."""
    breaker_reason: str | None = None
    """Why it opened; None while closed."""


@dataclass(frozen=True)
class RouteAccountInfo:
    name: str
    weight: int | None
    """Its configured weight; None: the route is in failover order."""
    healthy: bool | None
    """Takes the route's messages now: breaker closed and not paused
    (``worker.routing``); None when the throttle store could not be read."""
    sent_last_minute: int
    """The route's messages it sent in the last minute."""
    share_last_minute: float | None
    """Its share of the route's messages sent in the last minute (0..1);
    None when the route sent none."""


@dataclass(frozen=True)
class RouteInfo:
    name: str
    kinds: list[str] | None
    countries: list[str] | None
    prefixes: list[str] | None
    mode: str
    """``failover`` (the first healthy account) or ``weighted``."""
    accounts: list[RouteAccountInfo]
    sent_last_minute: int


@dataclass(frozen=True)
class ScheduledInfo:
    messages: int
    campaigns: int
    next_send_at: dt.datetime | None


@dataclass(frozen=True)
class FleetStatus:
    at: dt.datetime
    workers: list[WorkerInfo] | None
    """Workers that answered; None when they could not be asked."""
    queues: list[QueueInfo]
    scheduled: ScheduledInfo
    providers: list[ProviderInfo]
    sent_per_second_1m: float
    sent_per_second_5m: float
    unknown: int
    problems: list[str] = field(default_factory=list)
    routes: list[RouteInfo] = field(default_factory=list)
    """The providers file's routes (docs/routing.md); empty without routes."""
    recent_events: list[FleetEvent] = field(default_factory=list)
    """The last :data:`RECENT_EVENTS` fleet events (``worker.fleet_events``)."""


def inspect_workers(celery_app: Any, timeout: float = INSPECT_TIMEOUT) -> list[WorkerInfo]:
    """Workers that answer within ``timeout`` and the queues each consumes.

    Raises what the broker raises when it cannot be reached; no answer is [].
    """
    answer = celery_app.control.inspect(timeout=timeout).active_queues() or {}
    return [
        WorkerInfo(name=name, queues=sorted(q["name"] for q in queues))
        for name, queues in sorted(answer.items())
    ]


def make_bucket(settings: Settings, store: redis.Redis, provider: str) -> TokenBucket:
    """The bucket of ``provider`` as the workers build it (``worker.runtime``)."""
    account = settings.providers[provider]
    return TokenBucket(
        store,
        provider,
        rate=account.rate,
        burst=account.burst,
        decrease=settings.throttle_decrease,
        recovery=settings.throttle_recovery,
        min_factor=settings.throttle_min_factor,
    )


def fleet_status(
    session: Session,
    *,
    settings: Settings,
    store: redis.Redis | None,
    broker: redis.Redis | None,
    workers: Callable[[], list[WorkerInfo]] | None,
    now: dt.datetime,
) -> FleetStatus:
    """The fleet now; see the module docstring. Reads only."""
    problems: list[str] = []
    found_workers: list[WorkerInfo] | None = None
    if workers is not None:
        try:
            found_workers = workers()
        except Exception as exc:
            problems.append(f"workers: could not ask the broker ({type(exc).__name__})")
    # Sends of the last 1 and 5 minutes by provider: one index-only range each.
    window_1m = _sent_since(session, now - dt.timedelta(minutes=1))
    window_5m = _sent_since(session, now - dt.timedelta(minutes=5))
    providers = [
        _provider_info(session, settings, store, name, now, problems, window_1m, window_5m)
        for name in settings.providers
    ]
    events: list[FleetEvent] = []
    if store is not None:
        try:
            events = list_events(store, settings.routes, limit=RECENT_EVENTS)
        except redis.RedisError as exc:
            problems.append(f"throttle store: fleet events unavailable ({type(exc).__name__})")
    return FleetStatus(
        at=now,
        workers=found_workers,
        queues=_queues(session, broker, now, problems),
        scheduled=_scheduled(session),
        providers=providers,
        sent_per_second_1m=sum(window_1m.values()) / 60,
        sent_per_second_5m=sum(window_5m.values()) / 300,
        unknown=session.scalar(select(func.count()).where(Message.status == S.UNKNOWN)) or 0,
        problems=problems,
        routes=_routes(session, settings, providers, now),
        recent_events=events,
    )


def _running_or_none() -> ColumnElement[bool]:
    running = select(Campaign.id).where(Campaign.status == CampaignStatus.RUNNING)
    return or_(Message.campaign_id.is_(None), Message.campaign_id.in_(running))


def _queues(
    session: Session, broker: redis.Redis | None, now: dt.datetime, problems: list[str]
) -> list[QueueInfo]:
    # Became due at: the retry time of a retry, the send time of a scheduled
    # message, else its creation. A sweep's touch of updated_at must not reset it.
    due_since = func.coalesce(Message.retry_at, Message.send_at, Message.created_at)
    rows = session.execute(
        select(Message.kind, func.count(), func.min(due_since))
        .where(
            Message.status == S.QUEUED,
            or_(Message.send_at.is_(None), Message.send_at <= now),
            or_(Message.retry_at.is_(None), Message.retry_at <= now),
            _running_or_none(),
        )
        .group_by(Message.kind)
    ).all()
    # One kind per queue (``QUEUE_FOR_KIND``).
    due = {QUEUE_FOR_KIND[kind]: (count, _aware(oldest)) for kind, count, oldest in rows}
    depths: dict[str, int | None] = dict.fromkeys(QUEUES)
    if broker is not None:
        try:
            depths = {queue: queue_depth(broker, queue) for queue in QUEUES}
        except redis.RedisError as exc:
            problems.append(f"broker: queue depths unavailable ({type(exc).__name__})")
    result = []
    for queue in QUEUES:
        count, oldest = due.get(queue, (0, None))
        result.append(
            QueueInfo(
                name=queue,
                depth=depths[queue],
                due_messages=count,
                oldest_due_seconds=None
                if oldest is None
                else max(0.0, (now - oldest).total_seconds()),
            )
        )
    return result


def _scheduled(session: Session) -> ScheduledInfo:
    messages, next_at = session.execute(
        select(func.count(), func.min(Message.send_at)).where(Message.status == S.SCHEDULED)
    ).one()
    campaigns = session.scalar(
        select(func.count()).where(Campaign.status == CampaignStatus.SCHEDULED)
    )
    return ScheduledInfo(
        messages=messages or 0, campaigns=campaigns or 0, next_send_at=_aware(next_at)
    )


def _sent_since(session: Session, since: dt.datetime) -> dict[str, int]:
    rows = session.execute(
        select(Message.provider, func.count())
        .where(Message.sent_at >= since)
        .group_by(Message.provider)
    ).all()
    return {provider: count for provider, count in rows}


def _routes(
    session: Session, settings: Settings, providers: list[ProviderInfo], now: dt.datetime
) -> list[RouteInfo]:
    """Each route with its accounts' health and split of the last minute."""
    if not settings.routes:
        return []
    sent = session.execute(
        select(Message.route, Message.provider, func.count())
        .where(Message.route.is_not(None), Message.sent_at >= now - dt.timedelta(minutes=1))
        .group_by(Message.route, Message.provider)
    ).all()
    by_route: dict[str, dict[str, int]] = {}
    for route_name, provider, count in sent:
        if route_name is not None:
            by_route.setdefault(route_name, {})[provider] = count
    info = {p.name: p for p in providers}
    result = []
    for route in settings.routes.values():
        counts = by_route.get(route.name, {})
        total = sum(counts.get(a, 0) for a in route.accounts)
        weights: list[int | None] = (
            list(route.weights) if route.weights else [None] * len(route.accounts)
        )
        accounts = [
            RouteAccountInfo(
                name=account,
                weight=weight,
                healthy=_healthy(info[account]),
                sent_last_minute=counts.get(account, 0),
                share_last_minute=counts.get(account, 0) / total if total else None,
            )
            for account, weight in zip(route.accounts, weights, strict=True)
        ]
        result.append(
            RouteInfo(
                name=route.name,
                kinds=None if route.kinds is None else [str(k) for k in route.kinds],
                countries=None if route.countries is None else list(route.countries),
                prefixes=None if route.prefixes is None else list(route.prefixes),
                mode="failover" if route.weights is None else "weighted",
                accounts=accounts,
                sent_last_minute=total,
            )
        )
    return result


def _healthy(provider: ProviderInfo) -> bool | None:
    """As routing decides (``worker.routing``): breaker closed and not paused."""
    if provider.breaker is None or provider.paused is None:
        return None
    return provider.breaker == BreakerState.CLOSED.value and not provider.paused


def _provider_info(
    session: Session,
    settings: Settings,
    store: redis.Redis | None,
    name: str,
    now: dt.datetime,
    problems: list[str],
    sent_1m: dict[str, int],
    sent_5m: dict[str, int],
) -> ProviderInfo:
    account = settings.providers[name]
    paused: bool | None = None
    rate = factor = tokens = None
    health: HealthState | None = None
    if store is not None:
        try:
            bucket = make_bucket(settings, store, name)
            state = bucket.state()
            paused = bucket.is_paused()
            rate, factor, tokens = state.rate, state.factor, state.tokens
            health = ProviderHealth(store, name, breaker_settings(settings)).state()
        except redis.RedisError as exc:
            problems.append(f"throttle store: bucket {name} unavailable ({type(exc).__name__})")
        if health is not None and health.state is not BreakerState.CLOSED:
            problems.append(f"provider {name}: circuit breaker {health.state} ({health.reason})")
    errors = session.execute(
        select(Message.error_code, func.count())
        .where(
            Message.provider == name,
            Message.status == S.FAILED,
            Message.finished_at >= (now - ERRORS_WINDOW),
        )
        .group_by(Message.error_code)
    ).all()
    return ProviderInfo(
        name=name,
        paused=paused,
        configured_rate=account.rate,
        rate=rate,
        factor=factor,
        tokens=tokens,
        burst=account.burst,
        sent_per_second_1m=sent_1m.get(name, 0) / 60,
        sent_per_second_5m=sent_5m.get(name, 0) / 300,
        errors_last_hour={
            ("none" if code is None else str(code)): count
            for code, count in sorted(errors, key=lambda r: (r[0] is None, r[0] or 0))
        },
        breaker=None if health is None else health.state.value,
        breaker_since=None if health is None else health.since,
        breaker_reason=None if health is None else health.reason,
    )


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


# --- pause / resume ----------------------------------------------------------


class UnknownProvider(LookupError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__(f"unknown provider {name!r}; known: {', '.join(sorted(known)) or '-'}")


def pause(settings: Settings, store: redis.Redis, provider: str) -> bool:
    """Pause ``provider`` fleet-wide; False when it was paused already."""
    _check_provider(settings, provider)
    changed = pause_provider(store, provider)
    log.warning("provider paused", provider=provider, changed=changed)
    if changed:
        _record(store, provider, EventKind.PAUSED, reason="smsq fleet pause")
    return changed


def resume(settings: Settings, store: redis.Redis, provider: str) -> bool:
    """Resume ``provider``; False when it was not paused."""
    _check_provider(settings, provider)
    changed = resume_provider(store, provider)
    log.warning("provider resumed", provider=provider, changed=changed)
    if changed:
        _record(store, provider, EventKind.RESUMED, reason="smsq fleet resume")
    return changed


def _record(store: redis.Redis, provider: str, event: EventKind, *, reason: str) -> None:
    """The pause or resume is done; an event that cannot be kept is only logged."""
    try:
        record(store, provider, event, reason=reason)
    except redis.RedisError as exc:
        log.warning("fleet event not kept", provider=provider, event=event.value, error=str(exc))


def _check_provider(settings: Settings, provider: str) -> None:
    if provider not in settings.providers:
        raise UnknownProvider(provider, settings.providers)


# --- retry -------------------------------------------------------------------


class RetryNotAllowed(ValueError):
    """The state machine (``models.status``) has no operator re-queue from a status."""


@dataclass(frozen=True)
class RetryFilter:
    statuses: tuple[MessageStatus, ...] = (S.FAILED,)
    code: int | None = None
    campaign_id: str | None = None
    provider: str | None = None
    since: dt.datetime | None = None
    """Only messages that reached their status at or after this time."""


@dataclass
class RetryResult:
    matched: int = 0
    past_validity: int = 0
    """Matched rows whose validity has passed (they would expire at once unless
    a new validity is given)."""
    requeued: dict[str, list[str]] = field(default_factory=dict)  # queue -> ids
    reopened_campaigns: list[str] = field(default_factory=list)

    @property
    def requeued_count(self) -> int:
        return sum(len(ids) for ids in self.requeued.values())


def requeue_sources() -> frozenset[MessageStatus]:
    """The final statuses an operator may re-queue from (the state machine's rule)."""
    return OPERATOR_REQUEUE_FROM


def _conditions(flt: RetryFilter) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [
        Message.status.in_(list(flt.statuses)),
        # A cancelled campaign's messages would wait forever: the claim only
        # takes messages of running (or reopened finished) campaigns.
        or_(
            Message.campaign_id.is_(None),
            Message.campaign_id.not_in(
                select(Campaign.id).where(Campaign.status == CampaignStatus.CANCELLED)
            ),
        ),
    ]
    if flt.code is not None:
        where.append(Message.error_code == flt.code)
    if flt.campaign_id is not None:
        where.append(Message.campaign_id == flt.campaign_id)
    if flt.provider is not None:
        where.append(Message.provider == flt.provider)
    if flt.since is not None:
        where.append(Message.finished_at >= flt.since)
    return where


def find_retryable(session: Session, flt: RetryFilter, *, now: dt.datetime) -> RetryResult:
    """The dry run: how many messages :func:`requeue` would move. Reads only."""
    where = _conditions(flt)
    matched = session.scalar(select(func.count()).where(*where)) or 0
    past = session.scalar(select(func.count()).where(*where, Message.expires_at <= now)) or 0
    return RetryResult(matched=matched, past_validity=past)


def requeue(
    session: Session,
    flt: RetryFilter,
    *,
    now: dt.datetime,
    validity: float | None = None,
) -> RetryResult:
    """Move matching final messages back to ``queued`` as if new; commits.

    The rule (docs/operations.md): ``attempts``, ``error_code``,
    ``error_detail``, ``retry_at``, ``finished_at`` and the lease are reset, so
    the message gets the full ``SMSQ_MAX_ATTEMPTS`` again; ``parts_sent`` and
    the provider id stay (a long text resumes after its accepted parts);
    ``validity`` seconds from now, when given, replaces ``expires_at``. Each
    moved row gets an ``operator`` event. A finished campaign with re-queued
    messages runs again (the claim only takes messages of running campaigns).
    The caller enqueues ``result.requeued``.
    """
    refused = [s for s in flt.statuses if s not in requeue_sources()]
    if refused:
        raise RetryNotAllowed(
            f"the state machine does not allow re-queueing {', '.join(refused)} messages"
        )
    result = find_retryable(session, flt, now=now)
    finished = session.scalar(
        select(func.count())
        .select_from(Campaign)
        .where(
            Campaign.status == CampaignStatus.FINISHED,
            Campaign.id.in_(select(Message.campaign_id).where(*_conditions(flt))),
        )
    )
    if finished and not campaign_can_move(CampaignStatus.FINISHED, CampaignStatus.RUNNING):
        raise RetryNotAllowed(
            "the state machine does not allow a finished campaign to run again, and its "
            "messages are only sent while it runs: filter them out with --campaign or "
            "retry single messages"
        )
    moved = requeue_by_operator(
        session,
        where=_conditions(flt),
        now=now,
        detail="re-queued by an operator (smsq fleet retry)",
        expires_at=now + dt.timedelta(seconds=validity) if validity is not None else None,
        returning=(Message.kind, Message.campaign_id),
    )
    campaigns = sorted({cid for _, _, cid in moved if cid is not None})
    if campaigns and finished:
        result.reopened_campaigns = list(
            session.scalars(
                update(Campaign)
                .where(Campaign.id.in_(campaigns), Campaign.status == CampaignStatus.FINISHED)
                .values(status=CampaignStatus.RUNNING, finished_at=None)
                .returning(Campaign.id)
            )
        )
    session.commit()
    for mid, kind, _ in moved:
        result.requeued.setdefault(QUEUE_FOR_KIND[kind], []).append(mid)
    log.warning(
        "messages re-queued by an operator",
        requeued=len(moved),
        statuses=[str(s) for s in flt.statuses],
        code=flt.code,
        campaign_id=flt.campaign_id,
        reopened_campaigns=len(result.reopened_campaigns),
    )
    return result


def publish_batches(
    publisher: Publisher,
    by_queue: dict[str, list[str]],
    size: int,
    *,
    resend_unknown: bool = False,
) -> int:
    """Publish ``smsq.send_messages`` tasks of at most ``size`` ids; how many the broker took."""
    tasks = 0
    for queue, ids in by_queue.items():
        for start in range(0, len(ids), size):
            batch = ids[start : start + size]
            if publisher.send_messages(batch, queue=queue, resend_unknown=resend_unknown):
                tasks += 1
    return tasks


# --- reconcile ---------------------------------------------------------------


@dataclass(frozen=True)
class ReconcileReport:
    broker_lost: bool
    requeued: int
    leases_expired: int
    resend_unknown: int
    restarted_campaigns: int
    tasks_published: int
    dead_owner_requeued: int = 0
    """Rows of dead workers that never went out, back to ``queued`` (``worker.recovery``)."""
    dead_owner_unknown: int = 0
    """Rows of dead workers that may have gone out, now ``unknown``."""
    stalled_uploads: int = 0
    """Campaigns cancelled because their upload stopped (``worker.ingest_stall``)."""


def reconcile(
    sessions: Callable[[], Session],
    *,
    settings: Settings,
    broker: redis.Redis | None,
    publisher: Publisher,
    now: dt.datetime,
    store: redis.Redis | None = None,
) -> ReconcileReport:
    """One sweep (``worker.sweeper``) now, and publish what it decided.

    The same work as the beat task ``smsq.sweep``: safe to run at any time
    and next to it (every step is idempotent; sends are claimed). With the
    throttle store (``store``), dead workers' rows are recovered first and a
    live worker's expired lease gets ``SMSQ_OUTCOME_WRITE_PATIENCE`` more.
    """
    recovered = Recovered()
    if store is not None:
        try:
            recovered = recover(
                sessions,
                store=store,
                publisher=publisher,
                batch_size=settings.batch_size,
                now=now,
                settings=settings,
            )
        except redis.RedisError as exc:
            log.warning("dead workers not judged: Redis unreachable", error=type(exc).__name__)
    lost = broker_data_lost(broker) if broker is not None else False
    with sessions() as session:
        plan = sweep(
            session,
            now=now,
            requeue_after=settings.requeue_after,
            unknown_resend_after=settings.unknown_resend_after,
            broker_lost=lost,
            queue_is_empty=lambda q: broker is None or queue_depth(broker, q) == 0,
            resend_providers=[
                name for name, acc in settings.providers.items() if acc.expects_reports
            ],
            live_claims=live_claims(store) if store is not None else None,
            live_patience=settings.outcome_write_patience,
            dead_worker_resend_after=dead_worker_wait(settings),
            ingest_stall_after=settings.ingest_stall_after,
        )
    with sessions() as session:
        replay_orphans(session, status_field_of=report_status_field)
        drop_old_orphans(session, older_than=now - ORPHAN_REPORT_LIFETIME)
    size = settings.batch_size
    tasks = publish_batches(publisher, plan.requeue, size)
    tasks += publish_batches(publisher, plan.resend_unknown, size, resend_unknown=True)
    for campaign_id in plan.restart_campaigns:
        tasks += publisher.start_campaign(campaign_id)
    report = ReconcileReport(
        broker_lost=plan.broker_lost,
        requeued=plan.requeued,
        leases_expired=plan.leases_expired,
        resend_unknown=sum(len(v) for v in plan.resend_unknown.values()),
        restarted_campaigns=len(plan.restart_campaigns),
        tasks_published=tasks + recovered.tasks_published,
        dead_owner_requeued=recovered.requeued,
        dead_owner_unknown=recovered.unknown,
        stalled_uploads=len(plan.stalled_uploads),
    )
    log.info("reconcile", **{k: v for k, v in vars(report).items()})
    return report


# --- purge -------------------------------------------------------------------


def purge_queue(celery_app: Any, queue: str) -> int:
    """Delete every task waiting in ``queue`` on the broker; the number deleted.

    The database rows stay as they are (``queued``): the sweeper re-enqueues
    due ones once they are ``SMSQ_REQUEUE_AFTER`` old and the queue is empty,
    and ``smsq fleet reconcile`` does it now. Tasks already reserved by a
    worker (prefetched, or waiting for an ETA) are not in the queue and stay.
    """
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}; known: {', '.join(QUEUES)}")
    with celery_app.connection_for_write() as conn:
        purged = conn.default_channel.queue_purge(queue)
    log.warning("queue purged", queue=queue, tasks=purged)
    return int(purged or 0)
