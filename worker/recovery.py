"""Recovering a dead worker's rows in seconds (beat, every ``SMSQ_RECOVER_INTERVAL``).

A row ``sending`` whose owner is dead (``worker.owners``: its key gone within
the claim's epoch, i.e. unheard of for ``SMSQ_OWNER_TTL``):

- **marked on the wire** (its request may have left) becomes ``unknown``, as
  an expired lease always made it: resolved by its delivery report, or resent
  once with the same id after ``SMSQ_UNKNOWN_RESEND_AFTER``;
- **never marked** certainly never reached the provider: it goes back to
  ``queued`` with its attempt given back and is enqueued at once, OTPs first.

Rows of a live owner, and rows whose owner cannot be judged (Redis lost its
data since the claim, a token naming no owner), are left to the lease rule of
the sweeper (``worker.sweeper``). One indexed query and two Redis round trips
when nothing is to be done, so it can run every few seconds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.ledger import move_where
from models.status import EventSource, MessageStatus
from models.tables import Message
from smsq.core.names import QUEUE_FOR_KIND, QUEUE_OTP
from smsq.core.publisher import Publisher
from smsq.core.settings import Settings
from worker.owners import Verdict, judge, on_wire
from worker.unknown_resend import DIED_WHILE_SENDING, dead_worker_wait, unknown_due

log = structlog.get_logger("smsq.worker")

S = MessageStatus

REQUEUED_DETAIL = "its worker died before sending it: back to queued, attempt given back"
UNKNOWN_DETAIL = "its worker died while sending it: the outcome is unknown"


@dataclass
class Recovered:
    """What one recovery did; the caller enqueues ``requeue`` (OTP first)."""

    requeue: dict[str, list[str]] = field(default_factory=dict)  # queue -> ids
    unknown: int = 0
    dead_claims: int = 0
    tasks_published: int = 0
    resend_unknown: dict[str, list[str]] = field(default_factory=dict)  # queue -> ids

    @property
    def requeued(self) -> int:
        return sum(len(ids) for ids in self.requeue.values())

    def queues(self) -> list[str]:
        """The queues to enqueue, the OTP queue first."""
        return sorted(self.requeue, key=lambda queue: queue != QUEUE_OTP)


def sending_tokens(session: Session) -> list[str]:
    """The lease tokens of the claims holding rows in ``sending``."""
    return [
        token
        for token in session.scalars(
            select(Message.lease_token)
            .where(Message.status == S.SENDING, Message.lease_token.is_not(None))
            .distinct()
        )
        if token is not None
    ]


def recover_dead_owners(session: Session, store: redis.Redis, *, now: dt.datetime) -> Recovered:
    """Move the rows of dead owners' claims; commits. See the module docstring."""
    result = Recovered()
    tokens = sending_tokens(session)
    if not tokens:
        return result
    verdicts = judge(store, tokens)
    dead = [token for token in tokens if verdicts[token] is Verdict.DEAD]
    if not dead:
        return result
    marks = on_wire(store, dead)
    for token in dead:
        ended = {"lease_until": None, "lease_token": None}
        wired = sorted(marks.get(token, ()))
        for start in range(0, len(wired), 1000):
            result.unknown += len(
                move_where(
                    session,
                    S.UNKNOWN,
                    where=[
                        Message.lease_token == token,
                        Message.id.in_(wired[start : start + 1000]),
                    ],
                    from_statuses=[S.SENDING],
                    values={**ended, "error_detail": DIED_WHILE_SENDING},
                    source=EventSource.SWEEPER,
                    now=now,
                    detail=UNKNOWN_DETAIL,
                )
            )
        # What is left of the claim never went out.
        for message_id, kind in move_where(
            session,
            S.QUEUED,
            where=[Message.lease_token == token],
            from_statuses=[S.SENDING],
            values={**ended, "attempts": Message.attempts - 1},
            returning=(Message.kind,),
            source=EventSource.SWEEPER,
            now=now,
            detail=REQUEUED_DETAIL,
        ):
            result.requeue.setdefault(QUEUE_FOR_KIND[kind], []).append(message_id)
        result.dead_claims += 1
    session.commit()
    return result


def recover(
    sessions: Callable[[], Session],
    *,
    store: redis.Redis,
    publisher: Publisher,
    batch_size: int,
    now: dt.datetime,
    settings: Settings | None = None,
) -> Recovered:
    """Recover dead workers' rows now and enqueue them, OTPs first: the beat task
    ``smsq.recover_owners``, and the first step of ``worker.fleet.reconcile``.
    With ``settings``, a dead worker's rows left ``unknown`` earlier are resent
    once ``SMSQ_DEAD_WORKER_RESEND_AFTER`` passed without a report
    (``worker.unknown_resend``)."""
    with sessions() as session:
        recovered = recover_dead_owners(session, store, now=now)
        if settings is not None:
            recovered.resend_unknown = unknown_due(
                session,
                now=now,
                providers=[n for n, a in settings.providers.items() if a.expects_reports],
                after=None,  # the sweep's business
                dead_worker_after=dead_worker_wait(settings),
            )
    for queue in recovered.queues():
        ids = recovered.requeue[queue]
        for start in range(0, len(ids), batch_size):
            if publisher.send_messages(ids[start : start + batch_size], queue=queue):
                recovered.tasks_published += 1
    for queue, ids in sorted(recovered.resend_unknown.items(), key=lambda q: q[0] != QUEUE_OTP):
        for start in range(0, len(ids), batch_size):
            batch = ids[start : start + batch_size]
            if publisher.send_messages(batch, queue=queue, resend_unknown=True):
                recovered.tasks_published += 1
    if recovered.dead_claims or recovered.resend_unknown:
        log.warning(
            "dead workers' rows recovered",
            claims=recovered.dead_claims,
            requeued=recovered.requeued,
            unknown=recovered.unknown,
            resent_unknown=sum(len(ids) for ids in recovered.resend_unknown.values()),
        )
    return recovered


def live_claims(store: redis.Redis) -> Callable[[list[str]], set[str]]:
    """The sweep's question: which of these claims have a live owner (none when
    Redis cannot be asked: then the plain lease rule applies)."""

    def alive(tokens: list[str]) -> set[str]:
        try:
            verdicts = judge(store, tokens)
        except redis.RedisError:
            return set()
        return {token for token, verdict in verdicts.items() if verdict is Verdict.ALIVE}

    return alive
