"""worker.outcomes.record_outcomes on its own: what each provider answer
turns a claimed message into.

Rows are claimed with ``worker.claims.claim`` (as the sending path does) and
read back from the database (``stored``, ``events``: tests/worker/conftest.py)
on SQLite and PostgreSQL: the columns and the history a user sees.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from models.status import MessageStatus
from models.tables import Message
from providers.base import Accepted, Outcome, Rejected
from providers.errors import (
    OutcomeUnknown,
    PermanentError,
    ProviderProtocolError,
    QueueFull,
    Throttled,
    TransportError,
)
from worker.claims import Claimed, claim
from worker.outcomes import Retry, Written, record_outcomes
from worker.retry_policy import RetryPolicy

S = MessageStatus
CLAIMED_AT = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
NOW = CLAIMED_AT + dt.timedelta(seconds=2)  # when the answer is written
LEASE = 120.0
TOKEN = "claim-a"
POLICY = RetryPolicy(base=1.0, cap=60.0, max_attempts=5)
SEED = 42
LONG_TEXT = "x" * 400  # three GSM-7 parts

Stored = Callable[[str], dict[str, Any]]
Events = Callable[[str], list[dict[str, Any]]]
MakeMessage = Callable[..., Message]


def claimed(session: Session, make_message: MakeMessage, **fields: Any) -> Claimed:
    """A queued message, claimed by ``TOKEN`` (committed, as the worker does)."""
    message = make_message(status=S.QUEUED, **fields)
    [row] = claim(session, [message.id], now=CLAIMED_AT, lease=LEASE, token=TOKEN)
    session.commit()
    return row


def write(session: Session, *results: tuple[Claimed, Outcome], token: str = TOKEN) -> Written:
    """Record as the worker does (and commit, as its caller does)."""
    written = record_outcomes(
        session, list(results), now=NOW, policy=POLICY, token=token, rng=random.Random(SEED)
    )
    session.commit()
    return written


def expected_wait(attempt: int, retry_after: float | None = None) -> float:
    """The countdown the policy gives with the seed ``write`` uses (one draw)."""
    return POLICY.backoff(attempt, retry_after, random.Random(SEED))


def fields_of(row: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in expected}


# --- every kind of answer, one message each ----------------------------------------


@dataclass(frozen=True)
class Case:
    """A provider answer and what the user then sees of the message."""

    message: dict[str, Any]  # row fields before the claim
    outcome: Callable[[str], Outcome]  # message id -> the adapter's answer
    row: dict[str, Any]  # columns after the write
    event: tuple[str, int | None, str | None]  # status, provider_code, detail
    written: dict[str, int]  # counts of the returned Written
    retry_codes: dict[str, int] = field(default_factory=dict)


FINAL_COLUMNS = {"lease_until": None, "lease_token": None}

CASES = {
    "accepted": Case(
        {"text": LONG_TEXT},
        lambda mid: Accepted(mid, "P-1"),
        {
            "status": S.SENT,
            "provider_message_id": "P-1",
            "parts_sent": 3,
            "sent_at": NOW,
            "finished_at": None,
            "error_code": None,
            "attempts": 1,
        },
        (S.SENT, None, None),
        {"sent": 1},
    ),
    "accepted while roaming (code 3)": Case(
        {},
        lambda mid: Accepted(mid, "P-2", provider_code=3, note="recipient is roaming"),
        {"status": S.SENT, "provider_message_id": "P-2", "sent_at": NOW, "finished_at": None},
        (S.SENT, 3, "recipient is roaming"),
        {"sent": 1},
    ),
    "no answer": Case(
        {},
        lambda mid: Rejected(mid, OutcomeUnknown("no answer within 30 s")),
        {
            "status": S.UNKNOWN,
            "error_code": None,
            "error_detail": "no answer within 30 s",
            "sent_at": None,
            "finished_at": None,
        },
        (S.UNKNOWN, None, "no answer within 30 s"),
        {"unknown": 1},
    ),
    "an answer we cannot read": Case(
        {},
        lambda mid: Rejected(mid, ProviderProtocolError("not a panelsms answer", "<html>")),
        {
            "status": S.UNKNOWN,
            "error_detail": "not a panelsms answer; received '<html>'",
            "finished_at": None,
        },
        (S.UNKNOWN, None, "not a panelsms answer; received '<html>'"),
        {"unknown": 1},
    ),
    "permanent error": Case(
        {},
        lambda mid: Rejected(mid, PermanentError(5, "invalid number")),
        {
            "status": S.FAILED,
            "error_code": 5,
            "error_detail": "invalid number",
            "sent_at": None,
            "finished_at": NOW,
            "provider_message_id": None,
        },
        (S.FAILED, 5, "provider error 5: invalid number"),
        {"failed": 1},
    ),
    "retryable at the attempt cap": Case(
        {"attempts": POLICY.max_attempts - 1},  # the claim makes it the last
        lambda mid: Rejected(mid, QueueFull("provider error 6: queue full")),
        {
            "status": S.FAILED,
            "error_code": 6,
            "error_detail": "provider error 6: queue full",
            "finished_at": NOW,
            "retry_at": None,
            "attempts": POLICY.max_attempts,
        },
        (S.FAILED, 6, "gave up after 5 attempts: provider error 6: queue full"),
        {"failed": 1},
        {"6": 1},
    ),
    "retryable after the validity": Case(
        {"expires_at": NOW + dt.timedelta(seconds=10)},
        lambda mid: Rejected(mid, Throttled("provider error 7: throttled", retry_after=30)),
        {
            "status": S.EXPIRED,
            "error_code": 7,
            "error_detail": "provider error 7: throttled",
            "finished_at": NOW,
            "retry_at": None,
        },
        (S.EXPIRED, 7, "validity passes before the next attempt: provider error 7: throttled"),
        {"expired": 1},
        {"7": 1},
    ),
}


@pytest.mark.parametrize("case", [pytest.param(c, id=name) for name, c in CASES.items()])
def test_each_answer_becomes_its_status_columns_and_event(
    session: Session, make_message: MakeMessage, stored: Stored, events: Events, case: Case
) -> None:
    row = claimed(session, make_message, **case.message)
    written = write(session, (row, case.outcome(row.id)))
    assert fields_of(stored(row.id), case.row) == case.row
    assert fields_of(stored(row.id), FINAL_COLUMNS) == FINAL_COLUMNS
    status, code, detail = case.event
    assert events(row.id)[1:] == [
        {
            "status": status,
            "source": "worker",
            "applied": True,
            "provider_code": code,
            "detail": detail,
            "created_at": NOW,
        }
    ]
    counts = {"sent": 0, "failed": 0, "expired": 0, "unknown": 0, **case.written}
    assert (written.sent, written.failed, written.expired, written.unknown) == (
        counts["sent"],
        counts["failed"],
        counts["expired"],
        counts["unknown"],
    )
    assert written.retries == []
    assert written.retry_codes == case.retry_codes


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=name) for name, c in CASES.items()],
)
def test_updated_at_is_the_time_of_the_answer(
    session: Session, make_message: MakeMessage, stored: Stored, case: Case
) -> None:
    row = claimed(session, make_message, **case.message)
    write(session, (row, case.outcome(row.id)))
    assert stored(row.id)["updated_at"] == NOW


# --- retries: back to queued, with a countdown -------------------------------------


@pytest.mark.parametrize(
    ("error", "code", "label", "retry_after"),
    [
        (QueueFull("provider error 6: queue full"), 6, "6", None),
        (Throttled("provider error 7: throttled", retry_after=20), 7, "7", 20.0),
        (TransportError("connection refused"), None, "TransportError", None),
    ],
    ids=["code 6", "code 7 with Retry-After", "never left"],
)
def test_a_retryable_answer_queues_the_message_again_with_retry_at(
    session: Session,
    make_message: MakeMessage,
    stored: Stored,
    events: Events,
    error: Exception,
    code: int | None,
    label: str,
    retry_after: float | None,
) -> None:
    row = claimed(session, make_message, attempts=1)  # the claim makes it attempt 2
    assert isinstance(error, QueueFull | Throttled | TransportError)
    written = write(session, (row, Rejected(row.id, error)))
    wait = expected_wait(2, retry_after)
    assert retry_after is None or wait >= retry_after
    assert written.retries == [Retry(row.id, "transactional", wait, code)]
    assert written.retry_codes == {label: 1}
    assert (written.sent, written.failed, written.expired, written.unknown) == (0, 0, 0, 0)
    after = stored(row.id)
    assert fields_of(after, FINAL_COLUMNS) == FINAL_COLUMNS
    assert after["status"] == S.QUEUED
    assert after["retry_at"] == NOW + dt.timedelta(seconds=wait)
    assert (after["error_code"], after["error_detail"]) == (code, error.message)
    assert (after["attempts"], after["finished_at"], after["sent_at"]) == (2, None, None)
    assert events(row.id)[1:] == [
        {
            "status": S.QUEUED,
            "source": "worker",
            "applied": True,
            "provider_code": code,
            "detail": f"retry in {wait:.1f} s: {error.message}",
            "created_at": NOW,
        }
    ]


def test_a_batch_of_answers_is_written_in_one_call(
    session: Session, make_message: MakeMessage, stored: Stored
) -> None:
    rows = [claimed(session, make_message) for _ in range(6)]
    answers: list[Outcome] = [
        Accepted(rows[0].id, "P-0"),
        Accepted(rows[1].id, "P-1"),
        Rejected(rows[2].id, QueueFull("queue full")),
        Rejected(rows[3].id, PermanentError(9, "no credit")),
        Rejected(rows[4].id, OutcomeUnknown("timeout")),
        Rejected(rows[5].id, TransportError("refused")),
    ]
    written = write(session, *zip(rows, answers, strict=True))
    assert (written.sent, written.failed, written.expired, written.unknown) == (2, 1, 0, 1)
    assert [r.message_id for r in written.retries] == [rows[2].id, rows[5].id]
    assert [stored(r.id)["status"] for r in rows] == [
        S.SENT,
        S.SENT,
        S.QUEUED,
        S.FAILED,
        S.UNKNOWN,
        S.QUEUED,
    ]
    assert [stored(r.id)["provider_message_id"] for r in rows[:2]] == ["P-0", "P-1"]
    assert stored(rows[3].id)["error_code"] == 9


# --- parts of a long text ------------------------------------------------------------

# (parts already accepted before this attempt, the answer) -> parts_sent after
PARTS: list[tuple[str, int, Callable[[str], Outcome], int]] = [
    ("accepted: every part", 1, lambda mid: Accepted(mid, "P"), 3),
    ("retry adds what it got", 1, lambda mid: Rejected(mid, QueueFull("q"), parts_sent=1), 2),
    ("unknown adds", 0, lambda mid: Rejected(mid, OutcomeUnknown("t"), parts_sent=2), 2),
    ("failed adds", 1, lambda mid: Rejected(mid, PermanentError(5), parts_sent=1), 2),
    ("nothing more", 2, lambda mid: Rejected(mid, PermanentError(5)), 2),
]


@pytest.mark.parametrize(
    ("before", "outcome", "after"),
    [pytest.param(b, o, a, id=name) for name, b, o, a in PARTS],
)
def test_parts_sent_accumulates_across_attempts(
    session: Session,
    make_message: MakeMessage,
    stored: Stored,
    before: int,
    outcome: Callable[[str], Outcome],
    after: int,
) -> None:
    row = claimed(session, make_message, text=LONG_TEXT, parts_sent=before)
    assert row.parts_sent == before
    write(session, (row, outcome(row.id)))
    assert stored(row.id)["parts_sent"] == after


# --- answers that come too late to move the row -------------------------------------


@pytest.mark.parametrize("report_id", [None, "P-report"], ids=["report without id", "with id"])
def test_a_delivery_report_that_overtook_the_worker_is_not_overwritten(
    session: Session,
    make_message: MakeMessage,
    stored: Stored,
    events: Events,
    report_id: str | None,
) -> None:
    row = claimed(session, make_message)
    delivered_at = CLAIMED_AT + dt.timedelta(seconds=1)
    # What the report receiver wrote before the worker's own answer came back.
    session.execute(
        update(Message)
        .where(Message.id == row.id)
        .values(
            status=S.DELIVERED,
            finished_at=delivered_at,
            updated_at=delivered_at,
            provider_message_id=report_id,
        )
    )
    session.commit()
    written = write(session, (row, Accepted(row.id, "P-worker")))
    after = stored(row.id)
    assert after["status"] == S.DELIVERED
    assert after["finished_at"] == delivered_at
    # It still learns the provider's id (unless the report brought one) and when it was sent.
    assert after["provider_message_id"] == (report_id or "P-worker")
    assert after["sent_at"] == NOW
    assert [(e["status"], e["applied"]) for e in events(row.id)] == [
        (S.SENDING, True),
        (S.SENT, False),
    ]
    assert written.sent == 1  # the provider did accept it


def _taken_over(session: Session, make_message: MakeMessage) -> Claimed:
    """A row claimed by ``TOKEN`` whose lease ran out: the sweeper made it
    unknown and its one resend claimed it again under another token."""
    row = claimed(session, make_message)
    session.execute(
        update(Message)
        .where(Message.id == row.id)
        .values(status=S.UNKNOWN, lease_until=None, lease_token=None)
    )
    session.commit()
    resent = claim(session, [row.id], now=NOW, lease=LEASE, token="claim-b", resend_unknown=True)
    assert [r.id for r in resent] == [row.id]
    session.commit()
    return row


ANSWERS: dict[str, Callable[[str], Outcome]] = {
    "accepted": lambda mid: Accepted(mid, "P-late"),
    "retry": lambda mid: Rejected(mid, QueueFull("queue full")),
    "failed": lambda mid: Rejected(mid, PermanentError(5)),
    "unknown": lambda mid: Rejected(mid, OutcomeUnknown("timeout")),
}


@pytest.mark.parametrize("answer", list(ANSWERS.values()), ids=list(ANSWERS))
def test_a_row_another_claim_took_over_keeps_its_status_and_claim(
    session: Session,
    make_message: MakeMessage,
    stored: Stored,
    answer: Callable[[str], Outcome],
) -> None:
    row = _taken_over(session, make_message)
    write(session, (row, answer(row.id)))
    after = stored(row.id)
    assert (after["status"], after["lease_token"], after["attempts"]) == (S.SENDING, "claim-b", 2)
    assert (after["finished_at"], after["retry_at"], after["error_code"]) == (None, None, None)


@pytest.mark.parametrize(
    "answer",
    [pytest.param(a, id=name) for name, a in ANSWERS.items()],
)
def test_a_row_another_claim_took_over_is_not_written(
    session: Session,
    make_message: MakeMessage,
    stored: Stored,
    answer: Callable[[str], Outcome],
) -> None:
    row = _taken_over(session, make_message)
    before = stored(row.id)
    write(session, (row, answer(row.id)))
    assert stored(row.id) == before


@pytest.mark.parametrize("answer", list(ANSWERS.values()), ids=list(ANSWERS))
def test_the_late_answer_of_a_row_taken_over_is_kept_as_not_applied(
    session: Session,
    make_message: MakeMessage,
    events: Events,
    answer: Callable[[str], Outcome],
) -> None:
    row = _taken_over(session, make_message)
    write(session, (row, answer(row.id)))
    assert [e["applied"] for e in events(row.id)] == [True, True, False]


def test_a_late_acceptance_still_resolves_a_row_the_sweeper_made_unknown(
    session: Session, make_message: MakeMessage, stored: Stored, events: Events
) -> None:
    row = claimed(session, make_message)
    session.execute(
        update(Message)
        .where(Message.id == row.id)
        .values(status=S.UNKNOWN, lease_until=None, lease_token=None)
    )
    session.commit()
    write(session, (row, Accepted(row.id, "P-late")))
    after = stored(row.id)
    assert (after["status"], after["provider_message_id"], after["sent_at"]) == (
        S.SENT,
        "P-late",
        NOW,
    )
    assert [(e["status"], e["applied"]) for e in events(row.id)] == [
        (S.SENDING, True),
        (S.SENT, True),
    ]
