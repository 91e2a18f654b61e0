"""Writing what the providers answered, in bulk, and deciding what comes next.

Each outcome becomes one of:

- ``sent`` (accepted; code 3 roaming included, with its note);
- back to ``queued`` with ``retry_at`` (codes 6 and 7, HTTP 5xx, requests that
  never left), to be re-enqueued with a countdown: the worker slot is free
  while it waits;
- ``expired`` (the validity would pass before the next attempt) or ``failed``
  (the attempt cap was reached), keeping the last provider code;
- ``failed`` with the provider's code (every other code);
- ``unknown`` (no answer, or one we could not read: it may have been sent).

The rows are written by the ledger (``models.ledger.write_claimed_moves``):
one executemany per kind, guarded so a delivery report that overtook the
worker (``delivered`` before our ``sent``) is never overwritten.

Each outcome is counted here (``smsq_messages_total``, ``smsq_retries_total``:
:mod:`worker.metrics`) and logged at debug level with the message's ids,
provider and attempt: this is the one place that knows, per message, what
the provider's answer turned into. Never the text or the number.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.orm import Session

from models.ledger import RowMove, write_claimed_moves
from models.status import MessageStatus
from providers.base import Accepted, Outcome, Rejected
from providers.errors import OutcomeUnknown, PermanentError, ProviderProtocolError, RetryableError
from worker.claims import Claimed
from worker.metrics import MESSAGES, RETRIES, ROUTE_MESSAGES, code_label
from worker.retry_policy import RetryPolicy, Verdict

log = structlog.get_logger("smsq.worker")

S = MessageStatus


@dataclass(frozen=True, slots=True)
class Retry:
    message_id: str
    kind: str
    countdown: float
    code: int | None


@dataclass
class Written:
    """What :func:`record_outcomes` did, for the caller's follow-ups and logs."""

    sent: int = 0
    failed: int = 0
    expired: int = 0
    unknown: int = 0
    retries: list[Retry] = field(default_factory=list)
    retry_codes: dict[str, int] = field(default_factory=dict)


@dataclass
class _Change:
    status: MessageStatus
    values: dict[str, Any]
    code: int | None = None
    detail: str | None = None
    retry_code: str | None = None  # the retries_total label, when this is a retry


def record_outcomes(
    session: Session,
    results: Sequence[tuple[Claimed, Outcome]],
    *,
    now: dt.datetime,
    policy: RetryPolicy,
    token: str,
    rng: random.Random | None = None,
) -> Written:
    """Decide what each result means and write it through the ledger. The caller commits."""
    written, moves = decide_outcomes(results, now=now, policy=policy, rng=rng)
    write_claimed_moves(session, moves, now=now, token=token)
    return written


def decide_outcomes(
    results: Sequence[tuple[Claimed, Outcome]],
    *,
    now: dt.datetime,
    policy: RetryPolicy,
    rng: random.Random | None = None,
) -> tuple[Written, list[RowMove]]:
    """What each result means, as ledger moves; counted and logged once.

    Deciding is apart from writing so that a write the database refused can
    be tried again with the same decisions (the same backoff, no second count).
    """
    written = Written()
    moves: dict[str, RowMove] = {}
    for claimed, outcome in results:
        change = _decide(claimed, outcome, now=now, policy=policy, rng=rng, written=written)
        moves[claimed.id] = RowMove(
            claimed.id,
            change.status,
            change.values,
            provider_code=change.code,
            detail=change.detail,
        )
        _observe(claimed, change)
    return written, list(moves.values())


def _decide(
    claimed: Claimed,
    outcome: Outcome,
    *,
    now: dt.datetime,
    policy: RetryPolicy,
    rng: random.Random | None,
    written: Written,
) -> _Change:
    if isinstance(outcome, Accepted):
        written.sent += 1
        return _Change(
            S.SENT,
            {"provider_message_id": outcome.provider_message_id, "parts_sent": claimed.segments},
            code=outcome.provider_code,
            detail=outcome.note,
        )
    assert isinstance(outcome, Rejected)
    error = outcome.error
    parts_sent = claimed.parts_sent + outcome.parts_sent
    detail = error.message
    if isinstance(error, RetryableError):
        wait = policy.backoff(claimed.attempts, error.retry_after, rng)
        verdict = policy.decide(
            attempts=claimed.attempts, wait=wait, now=now, expires_at=claimed.expires_at
        )
        retry_code = str(error.code) if error.code is not None else type(error).__name__
        written.retry_codes[retry_code] = written.retry_codes.get(retry_code, 0) + 1
        if verdict is Verdict.RETRY:
            written.retries.append(Retry(claimed.id, claimed.kind, wait, error.code))
            return _Change(
                S.QUEUED,
                {
                    "retry_at": now + dt.timedelta(seconds=wait),
                    "error_code": error.code,
                    "error_detail": detail,
                    "parts_sent": parts_sent,
                },
                code=error.code,
                detail=f"retry in {wait:.1f} s: {detail}",
                retry_code=retry_code,
            )
        if verdict is Verdict.EXPIRE:
            written.expired += 1
            return _Change(
                S.EXPIRED,
                {"error_code": error.code, "error_detail": detail, "parts_sent": parts_sent},
                code=error.code,
                detail=f"validity passes before the next attempt: {detail}",
            )
        written.failed += 1
        return _Change(
            S.FAILED,
            {"error_code": error.code, "error_detail": detail, "parts_sent": parts_sent},
            code=error.code,
            detail=f"gave up after {claimed.attempts} attempts: {detail}",
        )
    if isinstance(error, OutcomeUnknown | ProviderProtocolError):
        written.unknown += 1
        return _Change(S.UNKNOWN, {"error_detail": detail, "parts_sent": parts_sent}, detail=detail)
    assert isinstance(error, PermanentError)
    written.failed += 1
    return _Change(
        S.FAILED,
        {"error_code": error.code, "error_detail": error.description, "parts_sent": parts_sent},
        code=error.code,
        detail=detail,
    )


def _observe(claimed: Claimed, change: _Change) -> None:
    """Count one outcome and log it (ids, provider, attempt, code: never text or number)."""
    code = code_label(change.code)
    MESSAGES.labels(status=change.status.value, provider=claimed.provider, code=code).inc()
    if claimed.route is not None:
        ROUTE_MESSAGES.labels(
            route=claimed.route, provider=claimed.provider, status=change.status.value
        ).inc()
    if change.retry_code is not None:
        RETRIES.labels(provider=claimed.provider, code=change.retry_code).inc()
    log.debug(
        "message outcome",
        message_id=claimed.id,
        campaign_id=claimed.campaign_id,
        provider=claimed.provider,
        attempt=claimed.attempts,
        status=change.status.value,
        code=change.code,
    )
