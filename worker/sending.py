"""Sending one task's batch of messages: claim, throttle, send, record.

This is a plain async function over a :class:`SendContext`, so it is tested
without a broker (fakeredis, SQLite, the simulator through MockTransport); the
Celery task in ``worker.tasks`` only runs it on the process's event loop.

Within a batch, messages with the same provider, text and options form a
group: the brand adapter packs a group into requests of up to ``max_numbers``
numbers, the panelsms adapter sends its recipients concurrently. Tokens are
taken from the provider's shared bucket before each request (one per
segment); while a group waits for tokens, requests already sent are in
flight. A group that would wait longer than ``MAX_TOKEN_WAIT`` gives its
unsent messages back (``queued``, not an attempt) and they are re-enqueued
with a countdown, so no worker slot is held waiting.

A message on a route (``messages.route``) gets its account after the claim
(:mod:`worker.routing`): the first healthy account of the route, or its
weighted share; a route is held back unclaimed only when every account is
down. A routed request that never reached its account (``TransportError``)
gives its messages back unsent for another account of the route.

While a batch is out, its lease is renewed every third of the lease, so the
sweeper only takes rows from a worker that stopped (killed, frozen). A row the
sweeper did take is dropped from the batch before it is sent: the sweeper
owns it now, and sending it here too would be a duplicate.

Metrics (:mod:`worker.metrics`): the duration of each adapter call per
provider, the time spent waiting for tokens before each grant, and the rows
given back because the wait was too long; outcomes are counted where they are
decided (:mod:`worker.outcomes`). Log lines about a batch carry its campaign
(when it has one) and, where they concern one message, its id, provider and
attempt; never its text or number.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis
import structlog
from sqlalchemy.orm import Session, sessionmaker

from models.db import UNAVAILABLE_ERRORS
from models.ledger import RowMove, assign_accounts, write_claimed_moves
from models.ledger.reports import replay_orphans
from models.status import MessageKind
from providers.base import Accepted, Adapter, Outbound, Outcome, Recipient, Rejected
from providers.errors import OutcomeUnknown, Throttled, TransportError
from providers.registry import report_status_field
from smsq.core.names import QUEUE_FOR_KIND
from smsq.core.publisher import Publisher
from worker.campaign_progress import finish_campaigns
from worker.claims import (
    WAITING_FOR_TOKENS,
    Claimed,
    claim,
    expire_overdue,
    held_back,
    release,
    renew_lease,
)
from worker.metrics import BREAKER_HELD, BUCKET_RELEASED, BUCKET_WAIT, SEND_LATENCY
from worker.outcomes import Written, decide_outcomes
from worker.owners import Owner
from worker.provider_health import (
    BreakerState,
    ProviderHealth,
    holding_all,
    is_outage_failure,
)
from worker.retry_policy import RetryPolicy
from worker.routing import Router
from worker.throttle import PAUSED_WAIT, TokenBucket, paused_flags

log = structlog.get_logger("smsq.worker")

MAX_TOKEN_WAIT = 5.0  # seconds a batch may wait for tokens before giving rows back
ERROR_RETRY_DELAY = 5.0  # seconds before rows given back after an internal error are retried
HELD_DETAIL = "released unsent: the provider's circuit breaker is open"
REROUTED_DETAIL = "released unsent: the account could not be reached; its route has another"
NO_ACCOUNT_DETAIL = "released unsent: no account of its route is healthy"
FAILOVER_WAIT = 1.0  # seconds before a message given back for another account of its route


@dataclass
class SendContext:
    """Everything sending needs; one per worker process (``worker.runtime``)."""

    sessions: sessionmaker[Session]
    client: httpx.AsyncClient
    adapters: Mapping[str, Adapter]
    bucket: Callable[[str], TokenBucket]
    publisher: Publisher
    policy: RetryPolicy
    lease: float
    send_concurrency: int = 100
    fill_wait: float = 1.0
    """Campaign lane, multi-number accounts: a request waits for up to about
    this many seconds of the bucket's rate to be full, rather than going out
    with what the bucket holds at that instant (one number per request under
    a busy throttle). 0: never waits (``SMSQ_FILL_WAIT``)."""
    otp_reserve: float = 0.0
    """Seconds of each account's rate that only OTPs may take
    (``SMSQ_OTP_RESERVE``; ``worker.throttle``); 0: none."""
    outcome_patience: float = 900.0  # seconds to keep retrying the write of outcomes
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    rng: random.Random | None = None
    health: Callable[[str], ProviderHealth] | None = None
    """The account's circuit breaker (``worker.provider_health``); None: no breaker."""
    owner: Owner | None = None
    """This process as the owner of its claims (``worker.owners``): names them and
    marks what goes on the wire, so a dead worker's rows are recovered in seconds."""
    router: Router | None = None
    """The routes of the providers file (``worker.routing``); None or empty: no routes."""


@dataclass
class GivenBack:
    """Claimed rows a batch gives back unsent, and how long each should wait.

    Each row keeps its own wait: a routed row going to another account of its
    route is tried again in about a second even when the same batch holds
    others for the breaker's probe interval.
    """

    rows: list[Claimed] = field(default_factory=list)
    waits: dict[str, float] = field(default_factory=dict)  # seconds, by id
    held: set[str] = field(default_factory=set)  # held back by an open circuit breaker
    details: dict[str, str] = field(default_factory=dict)  # other reasons, by id

    def add(
        self, rows: Iterable[Claimed], wait: float, *, held: bool = False, detail: str | None = None
    ) -> None:
        rows = list(rows)
        self.rows.extend(rows)
        self.waits.update((m.id, wait) for m in rows)
        if held:
            self.held.update(m.id for m in rows)
        elif detail is not None:
            self.details.update((m.id, detail) for m in rows)

    def detail(self, message_id: str) -> str:
        if message_id in self.held:
            return HELD_DETAIL
        return self.details.get(message_id, WAITING_FOR_TOKENS)

    def wait(self, message_id: str) -> float:
        return self.waits.get(message_id, 1.0)

    def by_queue_and_wait(self) -> dict[tuple[str, float], list[str]]:
        """Ids to re-enqueue, by queue and countdown."""
        groups: dict[tuple[str, float], list[str]] = {}
        for m in self.rows:
            groups.setdefault((QUEUE_FOR_KIND[m.kind], self.wait(m.id)), []).append(m.id)
        return groups


@dataclass
class BatchResult:
    claimed: int = 0
    released: int = 0
    expired_unsent: int = 0
    written: Written = field(default_factory=Written)


@dataclass(frozen=True)
class _GroupKey:
    provider: str
    text: str
    sender: str | None
    otp: bool
    stop_list: bool
    flash: bool
    validity: int | None
    campaign: bool = False
    """Campaign lane: a multi-number request waits briefly to be full (``fill_wait``)."""


async def send_batch(
    ctx: SendContext, ids: Sequence[str], *, resend_unknown: bool = False
) -> BatchResult:
    """Send the messages of ``ids`` that can be claimed; return what happened."""
    result = BatchResult()
    now = ctx.clock()
    token = ctx.owner.token() if ctx.owner is not None else secrets.token_hex(8)
    probing: set[str] = set()
    holding = {} if resend_unknown else _holding_accounts(ctx, probing)
    # An unknown row is resent on the account that may have it, never re-routed.
    router = (
        ctx.router if ctx.router is not None and ctx.router.routes and not resend_unknown else None
    )
    down: frozenset[str] = frozenset(holding)
    routes: list[str] = []
    hold_routes: set[str] = set()
    if router is not None:
        down = down | _paused_accounts(ctx, router.accounts())
        routes = list(router.routes)
        hold_routes = router.held_routes(down)
    stuck: list[Claimed] = []
    with ctx.sessions() as session:
        if not resend_unknown:
            result.expired_unsent = len(expire_overdue(session, ids, now=now))
        claimed = claim(
            session,
            ids,
            now=now,
            lease=ctx.lease,
            token=token,
            resend_unknown=resend_unknown,
            hold_providers=holding,
            routes=routes,
            hold_routes=hold_routes,
        )
        if router is not None:
            stored = {m.id: m.provider for m in claimed}
            claimed, stuck = router.assign(claimed, down, probing)
            # Before anything is sent: ``provider`` names the account that may have it.
            assign_accounts(
                session,
                {m.id: m.provider for m in claimed if m.provider != stored[m.id]},
                token=token,
            )
        session.commit()
        held = held_back(session, ids, holding, routes=routes, hold_routes=hold_routes)
    result.claimed = len(claimed) + len(stuck)
    if held:
        # Left queued, untouched: woken again when the breaker's probe is due
        # (a route held only by an operator's pause: when a paused bucket says).
        wait = max(holding.values(), default=PAUSED_WAIT) + (ctx.rng or random).uniform(0, 1.0)
        queues: dict[str, list[str]] = {}
        for id_, kind, provider in held:
            queues.setdefault(QUEUE_FOR_KIND[kind], []).append(id_)
            # A route held only by pauses is a paused bucket's release, not the breaker's.
            counter = BREAKER_HELD if provider in holding else BUCKET_RELEASED
            counter.labels(provider=provider).inc()
        for queue, held_ids in queues.items():
            ctx.publisher.send_messages(held_ids, queue=queue, countdown=wait)
        result.released += len(held)
    if not claimed and not stuck:
        return result
    given_back = GivenBack()
    if stuck:
        # None expected (the claim held routes with every account down); should
        # one slip through, it waits rather than going out on a down account.
        given_back.add(stuck, min(holding.values(), default=PAUSED_WAIT), detail=NO_ACCOUNT_DETAIL)
    campaigns = {m.campaign_id for m in [*claimed, *stuck] if m.campaign_id}
    # Every log line of a one-campaign batch names it; the binding ends with the batch.
    bound = {"campaign_id": campaigns.pop()} if len(campaigns) == 1 else {}
    with structlog.contextvars.bound_contextvars(**bound):
        await _send_claimed(ctx, claimed, token, now, result, given_back, down)
    return result


async def _send_claimed(
    ctx: SendContext,
    claimed: list[Claimed],
    token: str,
    now: dt.datetime,
    result: BatchResult,
    given_back: GivenBack,
    down: frozenset[str],
) -> None:
    groups: dict[_GroupKey, list[Claimed]] = {}
    for message in claimed:
        groups.setdefault(_group_key(message, now), []).append(message)
    outcomes: list[tuple[Claimed, Outcome]] = []
    lease = _Lease(ctx, [m.id for m in claimed], token, down)
    keeper = asyncio.create_task(lease.keep())
    try:
        await asyncio.gather(
            *(
                _send_group(ctx, key, msgs, outcomes, given_back, lease)
                for key, msgs in groups.items()
            )
        )
    finally:
        keeper.cancel()

    later = ctx.clock()
    result.written, moves = decide_outcomes(outcomes, now=later, policy=ctx.policy, rng=ctx.rng)
    await _store_outcomes(ctx, [*claimed, *given_back.rows], given_back, moves, token, later)
    if ctx.owner is not None:
        ctx.owner.forget(token)
    with ctx.sessions() as session:
        # Reports that overtook us (matched by the ids we just stored) apply now.
        accepted = [o for _, o in outcomes if isinstance(o, Accepted)]
        if accepted:
            replay_orphans(
                session,
                status_field_of=report_status_field,
                provider_message_ids=[o.provider_message_id for o in accepted],
                message_ids=[o.message_id for o in accepted],
            )
    result.released += len(given_back.rows)

    for (queue, countdown), retry_ids in _retry_batches(result.written).items():
        ctx.publisher.send_messages(retry_ids, queue=queue, countdown=countdown)
    for (queue, wait), rel_ids in given_back.by_queue_and_wait().items():
        ctx.publisher.send_messages(rel_ids, queue=queue, countdown=wait)
    log.info(
        "batch sent",
        claimed=result.claimed,
        sent=result.written.sent,
        failed=result.written.failed,
        unknown=result.written.unknown,
        retried=len(result.written.retries),
        released=result.released,
    )


async def _store_outcomes(
    ctx: SendContext,
    claimed: Sequence[Claimed],
    given_back: GivenBack,
    moves: list[RowMove],
    token: str,
    later: dt.datetime,
) -> None:
    """Write what this batch learned; while the database is away, keep it and retry.

    An accepted send must never end ``unknown`` because of a database blip,
    nor be sent again because its outcome was dropped: the decisions are
    kept and the same write is tried again (backing off to every 5 s) for
    ``ctx.outcome_patience`` seconds. Rows whose lease ran out meanwhile were
    made ``unknown`` by the sweeper; the ledger still moves them to what the
    provider answered (``unknown -> sent`` is allowed).
    """
    campaigns = {m.campaign_id for m in claimed if m.campaign_id}
    delay = 0.2
    deadline = time.monotonic() + ctx.outcome_patience
    while True:
        try:
            with ctx.sessions() as session:
                if given_back.rows:
                    by_detail: dict[tuple[str, float], list[str]] = {}
                    for m in given_back.rows:
                        key = (given_back.detail(m.id), given_back.wait(m.id))
                        by_detail.setdefault(key, []).append(m.id)
                    for (detail, wait), ids in by_detail.items():
                        retry_at = later + dt.timedelta(seconds=wait)
                        release(
                            session, ids, now=later, retry_at=retry_at, token=token, detail=detail
                        )
                write_claimed_moves(session, moves, now=later, token=token)
                finish_campaigns(session, campaigns, now=later)
                session.commit()
            if delay > 0.2:
                log.warning("outcomes written after the database came back", messages=len(moves))
            return
        except UNAVAILABLE_ERRORS as exc:  # away or dropped us: worth trying again
            if time.monotonic() + delay > deadline:
                log.error("outcomes lost: the database stayed away", messages=len(moves))
                raise
            log.warning(
                "database away: outcomes kept, retrying",
                error=type(exc).__name__,
                messages=len(moves),
                retry_in=delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _group_key(message: Claimed, now: dt.datetime) -> _GroupKey:
    validity = None
    if message.expires_at is not None and message.kind == MessageKind.OTP:
        # The network should stop trying once an OTP is useless.
        validity = max(60, int((message.expires_at - now).total_seconds()) // 60 * 60)
    return _GroupKey(
        provider=message.provider,
        text=message.text,
        sender=message.sender,
        otp=message.kind == MessageKind.OTP,
        stop_list=message.stop_list,
        flash=message.flash,
        validity=validity,
        campaign=message.kind == MessageKind.CAMPAIGN,
    )


def _tokens(message: Claimed) -> int:
    """One token per segment still to send (a resumed long text skips sent parts)."""
    return max(1, message.segments - message.parts_sent)


class _Lease:
    """Keeps a batch's rows leased while it works; knows which it still owns."""

    def __init__(
        self, ctx: SendContext, ids: list[str], token: str, down: frozenset[str] = frozenset()
    ) -> None:
        self.ctx = ctx
        self.ids = ids
        self.token = token
        self.owned = set(ids)
        self.down = down  # accounts down when the batch claimed (worker.routing)

    async def keep(self) -> None:
        while True:
            await asyncio.sleep(self.ctx.lease / 3)
            with self.ctx.sessions() as session:
                self.owned = renew_lease(
                    session, self.ids, now=self.ctx.clock(), lease=self.ctx.lease, token=self.token
                )
                session.commit()


async def _send_group(
    ctx: SendContext,
    key: _GroupKey,
    messages: list[Claimed],
    outcomes: list[tuple[Claimed, Outcome]],
    given_back: GivenBack,
    lease: _Lease,
) -> None:
    pending = deque(messages)
    in_flight: list[asyncio.Task[None]] = []
    try:
        await _feed_group(ctx, key, pending, in_flight, outcomes, given_back, lease)
    except Exception:
        # The throttle store is down, the account was removed from the
        # providers file, ...: what never reached the adapter goes back to
        # 'queued' (the sweeper or a retry picks it up); what did is recorded.
        log.exception("sending stopped for a group", provider=key.provider, unsent=len(pending))
        given_back.add(pending, ERROR_RETRY_DELAY)
    finally:
        await asyncio.gather(*in_flight)


async def _feed_group(
    ctx: SendContext,
    key: _GroupKey,
    pending: deque[Claimed],
    in_flight: list[asyncio.Task[None]],
    outcomes: list[tuple[Claimed, Outcome]],
    given_back: GivenBack,
    lease: _Lease,
) -> None:
    """Take tokens and hand chunks of ``pending`` to the adapter, popping them."""
    adapter = ctx.adapters[key.provider]
    health = ctx.health(key.provider) if ctx.health is not None else None
    per_request = adapter.max_recipients if adapter.max_recipients > 1 else ctx.send_concurrency
    fill = key.campaign and adapter.max_recipients > 1 and ctx.fill_wait > 0
    factor = 1.0  # the bucket's AIMD factor, as of the last answer
    waited = 0.0  # since the last grant
    while pending:
        lost = [m for m in pending if m.id not in lease.owned]
        for message in lost:
            log.warning("lease lost before sending", **message_fields(message))
        if lost:
            kept = [m for m in pending if m.id in lease.owned]
            pending.clear()
            pending.extend(kept)
            if not pending:
                break
        probe = False
        if health is not None:
            gate = health.gate()
            if not (gate.send or gate.probe):
                # The breaker is open: nothing goes out, no attempt is spent.
                BREAKER_HELD.labels(provider=key.provider).inc(len(pending))
                wait = gate.wait + (ctx.rng or random).uniform(0, 1.0)
                _hold(ctx, pending, wait, given_back, lease.down)
                break
            probe = gate.probe
        # Asked each time: a group can take seconds, and a rate changed
        # meanwhile applies to its next grant (the runtime caches the bucket).
        bucket = ctx.bucket(key.provider)
        reserve = 0 if key.otp else bucket.otp_reserve(ctx.otp_reserve)
        size = 1 if probe else per_request
        window = [pending[i] for i in range(min(size, len(pending)))]
        wanted = sum(_tokens(m) for m in window)
        minimum = _tokens(window[0])  # a long text's segments in one grant
        filling = fill and not probe
        if filling:
            # Fill the request, waiting at most about fill_wait for the tokens
            # (at the bucket's rate now), never into the OTP reserve.
            full = min(wanted, int(bucket.rate * factor * ctx.fill_wait), bucket.burst - reserve)
            filling = full > minimum
            minimum = max(minimum, full)
        grant = bucket.acquire(wanted, minimum=minimum, reserve=reserve)
        if filling and grant.granted == 0 and grant.factor < factor:
            # The bucket runs slower than this request was sized for: size it again.
            factor = grant.factor
            continue
        factor = grant.factor
        if grant.granted == 0:
            if waited + grant.wait > MAX_TOKEN_WAIT:
                BUCKET_RELEASED.labels(provider=key.provider).inc(len(pending))
                given_back.add(pending, grant.wait)
                break
            await asyncio.sleep(grant.wait)
            waited += grant.wait
            continue
        BUCKET_WAIT.labels(provider=key.provider).observe(waited)
        waited = 0.0
        take: list[Claimed] = []
        used = 0
        while pending and used + _tokens(pending[0]) <= grant.granted:
            message = pending.popleft()
            used += _tokens(message)
            take.append(message)
        if used < grant.granted:
            bucket.refund(grant.granted - used)
        chunk = _send_chunk(ctx, key, take, adapter, outcomes, given_back, lease, probe=probe)
        if probe:
            await chunk  # its answer decides whether the rest may go
        else:
            in_flight.append(asyncio.create_task(chunk))


def _mark_on_wire(
    ctx: SendContext, lease: _Lease, messages: list[Claimed], given_back: GivenBack
) -> bool:
    """Record ``messages`` as on the wire just before their request goes out
    (``worker.owners``): as late as possible, so a worker killed before it
    sends leaves few rows marked that never left.

    False when the request must not go out: Redis could not record it (the
    rows are given back unsent), or this process was declared dead and its
    rows may be another worker's now (the rest of the claim is dropped).
    """
    if ctx.owner is None:
        return True
    try:
        if ctx.owner.mark(lease.token, [m.id for m in messages]):
            return True
    except redis.RedisError as exc:
        log.warning("on-wire mark failed: rows given back", error=type(exc).__name__)
        given_back.add(messages, ERROR_RETRY_DELAY)
        return False
    log.warning("owner declared dead: claim dropped unsent", messages=len(messages))
    lease.owned = set()
    return False


async def _send_chunk(
    ctx: SendContext,
    key: _GroupKey,
    messages: list[Claimed],
    adapter: Adapter,
    outcomes: list[tuple[Claimed, Outcome]],
    given_back: GivenBack,
    lease: _Lease,
    *,
    probe: bool = False,
) -> None:
    if not _mark_on_wire(ctx, lease, messages, given_back):
        with contextlib.suppress(Exception):  # tokens not spent; a refund is an optimisation
            ctx.bucket(key.provider).refund(sum(_tokens(m) for m in messages))
        return
    outbound = Outbound(
        text=key.text,
        recipients=[Recipient(m.id, m.to, first_part=m.parts_sent + 1) for m in messages],
        sender=key.sender,
        otp=key.otp,
        stop_list=key.stop_list,
        flash=key.flash,
        validity=key.validity,
    )
    started = time.perf_counter()
    try:
        results: list[Outcome] = await adapter.send(outbound, ctx.client)
    except Exception as exc:
        # Adapters do not raise for provider answers; this is a bug or a
        # resource failure after the requests may have left: never resend blindly.
        fields = message_fields(messages[0]) if len(messages) == 1 else {"messages": len(messages)}
        log.exception("adapter failed", **{"provider": key.provider, **fields})
        error = OutcomeUnknown(f"sending failed inside smsq: {type(exc).__name__}")
        results = [Rejected(m.id, error) for m in messages]
    finally:
        SEND_LATENCY.labels(provider=key.provider).observe(time.perf_counter() - started)
    one_request = adapter.max_recipients > 1  # one request carried every number
    pairs = _after_health(
        ctx, key.provider, messages, results, given_back, probe, one_request, lease.down
    )
    outcomes.extend(_fail_over(ctx, key.provider, pairs, given_back, lease.down))
    if any(isinstance(r, Rejected) and isinstance(r.error, Throttled) for r in results):
        with contextlib.suppress(Exception):  # a slower bucket is an optimisation
            ctx.bucket(key.provider).penalize()


def _after_health(
    ctx: SendContext,
    provider: str,
    messages: list[Claimed],
    results: list[Outcome],
    given_back: GivenBack,
    probe: bool,
    one_request: bool,
    down: frozenset[str] = frozenset(),
) -> list[tuple[Claimed, Outcome]]:
    """Tell the breaker what the provider answered; return the outcomes to record.

    While the breaker is not closed (it just opened, a probe failed, or it
    opened while these requests were in flight), a failure that certainly did
    not send is given back unsent instead: the outage spends no attempts. A
    routed one whose request never reached the account goes to another account
    of its route (:func:`_fail_over`) rather than waiting out this one's probe
    interval: otherwise a message that was the probe, refused, is held and is
    the probe again next time, and never leaves while the account is away.
    """
    pairs = list(zip(messages, results, strict=True))
    if ctx.health is None:
        return pairs
    health = ctx.health(provider)
    try:
        state = health.record(results, probe=probe, one_request=one_request)
    except Exception:  # a breaker that cannot be told must not lose the outcomes
        log.exception("provider health not recorded", provider=provider)
        return pairs
    if state is BreakerState.CLOSED:
        return pairs
    kept = [(m, r) for m, r in pairs if not is_outage_failure(r)]
    outage_pairs = [(m, r) for m, r in pairs if is_outage_failure(r)]
    outage = [m for m, _r in _fail_over(ctx, provider, outage_pairs, given_back, down)]
    if outage:
        BREAKER_HELD.labels(provider=provider).inc(len(outage))
        _hold(ctx, outage, health.settings.probe_interval, given_back, down)
    return kept


def _hold(
    ctx: SendContext,
    messages: Iterable[Claimed],
    wait: float,
    given_back: GivenBack,
    down: frozenset[str],
) -> None:
    """Give ``messages`` back unsent, held by their account's open breaker: for
    ``wait`` (until its probe), but a routed one whose route has another
    healthy account for :data:`FAILOVER_WAIT` only: the next batch routes it
    there, and a route's traffic must not pause for the probe interval when
    its first account goes down (docs/routing.md)."""
    router = ctx.router
    elsewhere: list[Claimed] = []
    stay: list[Claimed] = []
    for message in messages:
        other = router is not None and router.has_other(message, down)
        (elsewhere if other else stay).append(message)
    if elsewhere:
        given_back.add(elsewhere, FAILOVER_WAIT, held=True)
    if stay:
        given_back.add(stay, wait, held=True)


def _fail_over(
    ctx: SendContext,
    provider: str,
    pairs: list[tuple[Claimed, Outcome]],
    given_back: GivenBack,
    down: frozenset[str],
) -> list[tuple[Claimed, Outcome]]:
    """Give back unsent, for another account of their route, the routed messages
    whose request certainly never reached ``provider`` (refused, DNS, TLS, a
    connect timeout: ``TransportError``); return the outcomes to record.

    Nothing else moves: a read timeout or an unreadable answer may have been
    accepted (``unknown`` stays on this account), and codes 6 and 7 are
    answers (retried later on this account).
    """
    router = ctx.router
    if router is None or not router.routes:
        return pairs
    kept: list[tuple[Claimed, Outcome]] = []
    moved: list[Claimed] = []
    for message, outcome in pairs:
        never_sent = isinstance(outcome, Rejected) and isinstance(outcome.error, TransportError)
        if never_sent and router.has_other(message, down):
            moved.append(message)
        else:
            kept.append((message, outcome))
    if moved:
        router.avoid(provider)
        log.info(
            "account unreachable: messages go to another of their route",
            provider=provider,
            messages=len(moved),
        )
        given_back.add(moved, FAILOVER_WAIT, detail=REROUTED_DETAIL)
    return kept


def _paused_accounts(ctx: SendContext, accounts: Iterable[str]) -> frozenset[str]:
    """The accounts among ``accounts`` an operator paused (``smsq fleet pause``)."""
    names = list(accounts)
    if not names:
        return frozenset()
    try:
        flags = paused_flags(ctx.bucket(names[0]).client, names)  # one round trip
    except Exception:  # Redis away: route as usual; the bucket decides per chunk
        log.warning("pause not read", providers=names, exc_info=True)
        return frozenset()
    return frozenset(name for name, paused in zip(names, flags, strict=True) if paused)


def _holding_accounts(ctx: SendContext, probing: set[str] | None = None) -> dict[str, float]:
    """Accounts whose open breaker holds every message, and for how long;
    ``probing`` gets those whose breaker is open with a probe due."""
    if ctx.health is None:
        return {}
    breakers = [ctx.health(provider) for provider in ctx.adapters]
    try:
        waits = holding_all(breakers)
    except Exception:  # Redis away: claim as usual; the gate decides per chunk
        log.warning("provider health not read", exc_info=True)
        return {}
    holding = {}
    for health, wait in zip(breakers, waits, strict=True):
        if wait > 0:
            holding[health.provider] = wait
        elif probing is not None and health.probe_due:
            probing.add(health.provider)
    return holding


def message_fields(message: Claimed) -> dict[str, Any]:
    """What a log line about one message carries: ids, provider, attempt (no text, no number)."""
    return {
        "message_id": message.id,
        "campaign_id": message.campaign_id,
        "provider": message.provider,
        "attempt": message.attempts,
    }


def _retry_batches(written: Written) -> dict[tuple[str, float], list[str]]:
    """Retries grouped by queue and a countdown rounded up to whole seconds."""
    batches: dict[tuple[str, float], list[str]] = {}
    for retry in written.retries:
        countdown = float(int(retry.countdown) + 1)
        batches.setdefault((QUEUE_FOR_KIND[retry.kind], countdown), []).append(retry.message_id)
    return batches
