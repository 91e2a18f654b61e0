"""The report applier: queued delivery reports reach the database, and none is lost.

Reports are appended to the stream as the receiver does
(:func:`producer.report_stream.append_reports`), on fakeredis and a real
Redis, and applied to SQLite and PostgreSQL. A database outage is a session
factory that raises ``OperationalError`` a number of times, as SQLAlchemy
does while the server is away.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.exc import DataError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from models.ledger.reports import ReportToRecord, record_reports
from models.status import MessageStatus as S
from models.tables import Message, MessageEvent
from producer import report_applier
from producer.report_applier import DatabaseAway, ReportApplier
from producer.report_stream import append_reports, decode, received_at
from providers.panelsms.reports import parse_report
from smsq.core.names import DLR_STREAM_GROUP, DLR_STREAM_KEY

MakeMessage = Callable[..., Message]


def report_for(message: Message, status: str = "delivered") -> ReportToRecord:
    raw: dict[str, Any] = {"transactionId": message.id, "status": status}
    return ReportToRecord(parse_report(raw), raw, ["panel"])


def statuses(session: Session, messages: list[Message]) -> list[str]:
    session.expire_all()
    return [session.get_one(Message, m.id).status for m in messages]


def pending(client: redis.Redis) -> int:
    return int(client.xpending(DLR_STREAM_KEY, DLR_STREAM_GROUP)["pending"])


class FlakySessions:
    """A session factory whose first ``failures`` sessions cannot reach the database."""

    def __init__(self, sessions: sessionmaker[Session], failures: int) -> None:
        self.sessions = sessions
        self.failures = failures
        self.opened = 0

    def __call__(self) -> Session:
        self.opened += 1
        if self.failures > 0:
            self.failures -= 1
            raise OperationalError("SELECT", {}, ConnectionRefusedError("connection refused"))
        return self.sessions()


def test_reports_are_applied_in_batches_and_leave_the_stream(
    redis_client: redis.Redis,
    sessions: sessionmaker[Session],
    session: Session,
    make_message: MakeMessage,
) -> None:
    messages = [make_message(status=S.SENT) for _ in range(7)]
    append_reports(redis_client, [report_for(m) for m in messages])
    counting = FlakySessions(sessions, failures=0)
    applier = ReportApplier(redis_client, counting, batch=3)

    assert [applier.apply_batch() for _ in range(4)] == [3, 3, 1, 0]
    assert counting.opened == 3  # one transaction per batch
    assert statuses(session, messages) == [S.DELIVERED] * 7
    assert redis_client.xlen(DLR_STREAM_KEY) == 0 and pending(redis_client) == 0


def test_while_the_database_is_away_reports_stay_queued_then_are_applied(
    redis_client: redis.Redis,
    sessions: sessionmaker[Session],
    session: Session,
    make_message: MakeMessage,
) -> None:
    messages = [make_message(status=S.SENT) for _ in range(3)]
    append_reports(redis_client, [report_for(m) for m in messages])
    applier = ReportApplier(redis_client, FlakySessions(sessions, failures=2))

    for _ in range(2):
        with pytest.raises(DatabaseAway, match="connection refused"):
            applier.apply_batch()
        assert redis_client.xlen(DLR_STREAM_KEY) == 3 and pending(redis_client) == 3
        assert statuses(session, messages) == [S.SENT] * 3

    assert applier.apply_batch() == 3  # the database is back: the pending ones
    assert statuses(session, messages) == [S.DELIVERED] * 3
    assert redis_client.xlen(DLR_STREAM_KEY) == 0 and pending(redis_client) == 0


def test_the_applier_thread_retries_with_backoff_until_the_database_is_back(
    redis_client: redis.Redis,
    sessions: sessionmaker[Session],
    session: Session,
    make_message: MakeMessage,
) -> None:
    message = make_message(status=S.SENT)
    append_reports(redis_client, [report_for(message)])
    flaky = FlakySessions(sessions, failures=3)  # backoff 0.2 + 0.4 + 0.8 s
    stop = threading.Event()
    thread = threading.Thread(target=ReportApplier(redis_client, flaky).run, args=(stop,))
    started = time.monotonic()
    thread.start()
    try:
        while statuses(session, [message]) != [S.DELIVERED] and time.monotonic() - started < 10:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(5)
    assert statuses(session, [message]) == [S.DELIVERED]
    assert flaky.opened == 4 and time.monotonic() - started >= 1.4
    assert not thread.is_alive()


def test_a_dead_appliers_reports_are_taken_over(
    redis_client: redis.Redis,
    sessions: sessionmaker[Session],
    session: Session,
    make_message: MakeMessage,
) -> None:
    messages = [make_message(status=S.SENT) for _ in range(2)]
    append_reports(redis_client, [report_for(m) for m in messages])
    dead = ReportApplier(redis_client, FlakySessions(sessions, failures=1), consumer="dead")
    with pytest.raises(DatabaseAway):
        dead.apply_batch()  # read, never acknowledged: then it died

    heir = ReportApplier(redis_client, sessions, consumer="heir", claim_idle=0.05)
    assert heir.drain() == 0  # new entries only: the dead one's are not idle long enough yet
    time.sleep(0.1)
    assert heir.reclaim() == 2
    assert heir.drain() == 2
    assert statuses(session, messages) == [S.DELIVERED] * 2
    assert redis_client.xlen(DLR_STREAM_KEY) == 0 and pending(redis_client) == 0


def test_a_report_applied_again_after_a_takeover_changes_nothing(
    redis_client: redis.Redis,
    sessions: sessionmaker[Session],
    session: Session,
    make_message: MakeMessage,
) -> None:
    message = make_message(status=S.SENT)
    append_reports(redis_client, [report_for(message, "undelivered")])
    # An applier that committed the report and died before acknowledging it.
    redis_client.xgroup_create(DLR_STREAM_KEY, DLR_STREAM_GROUP, id="0", mkstream=True)
    answer: Any = redis_client.xreadgroup(DLR_STREAM_GROUP, "dead", {DLR_STREAM_KEY: ">"})
    [(entry_id, fields)] = answer[0][1]
    with sessions() as first:
        record_reports(first, [decode(entry_id, fields)])
    session.expire_all()
    before = session.get_one(Message, message.id)
    snapshot = {c.key: getattr(before, c.key) for c in Message.__table__.columns}

    heir = ReportApplier(redis_client, sessions, consumer="heir", claim_idle=0)
    assert heir.reclaim() == 1 and heir.drain() == 1

    session.expire_all()
    after = session.get_one(Message, message.id)
    assert {c.key: getattr(after, c.key) for c in Message.__table__.columns} == snapshot
    events = session.scalars(select(MessageEvent).where(MessageEvent.message_id == message.id))
    assert [(e.status, e.applied) for e in events] == [
        (S.UNDELIVERED, True),
        (S.UNDELIVERED, False),
    ]


def test_an_entry_that_is_no_report_is_dropped(
    redis_client: redis.Redis,
    sessions: sessionmaker[Session],
    session: Session,
    make_message: MakeMessage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    message = make_message(status=S.SENT)
    redis_client.xadd(DLR_STREAM_KEY, {"report": "{not json"})
    append_reports(redis_client, [report_for(message)])
    assert ReportApplier(redis_client, sessions).drain() == 2
    assert statuses(session, [message]) == [S.DELIVERED]
    assert "dlr.dropped" in caplog.text
    assert redis_client.xlen(DLR_STREAM_KEY) == 0


def test_a_redis_that_lost_the_stream_and_group_is_read_again(
    redis_client: redis.Redis,
    sessions: sessionmaker[Session],
    session: Session,
    make_message: MakeMessage,
) -> None:
    applier = ReportApplier(redis_client, sessions)
    assert applier.drain() == 0
    redis_client.delete(DLR_STREAM_KEY)  # a restart without persistence
    message = make_message(status=S.SENT)
    assert applier.drain() == 0  # the group is made again
    append_reports(redis_client, [report_for(message)])
    assert applier.drain() == 1
    assert statuses(session, [message]) == [S.DELIVERED]


def test_the_event_is_dated_when_the_report_arrived_not_when_applied(
    redis_client: redis.Redis,
    sessions: sessionmaker[Session],
    session: Session,
    make_message: MakeMessage,
) -> None:
    message = make_message(status=S.SENT)
    [entry_id] = append_reports(redis_client, [report_for(message)])
    time.sleep(0.05)
    ReportApplier(redis_client, sessions).drain()
    [event] = session.scalars(select(MessageEvent).where(MessageEvent.message_id == message.id))
    assert event.created_at == received_at(entry_id)


def test_the_backlog_is_measured(
    redis_client: redis.Redis, sessions: sessionmaker[Session], make_message: MakeMessage
) -> None:
    now = time.time()
    applier = ReportApplier(redis_client, sessions, clock=lambda: now + 60)
    append_reports(redis_client, [report_for(make_message(status=S.SENT)) for _ in range(2)])
    applier.observe_backlog()
    assert REGISTRY.get_sample_value("smsq_dlr_backlog") == 2
    age = REGISTRY.get_sample_value("smsq_dlr_backlog_age_seconds")
    assert age is not None and 59 <= age <= 62
    applier.drain()
    assert REGISTRY.get_sample_value("smsq_dlr_backlog") == 0
    assert REGISTRY.get_sample_value("smsq_dlr_backlog_age_seconds") == 0


def test_only_a_report_the_database_refuses_by_its_value_is_given_up(
    redis_client: redis.Redis,
    sessions: sessionmaker[Session],
    session: Session,
    make_message: MakeMessage,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    poison, good = make_message(status=S.SENT), make_message(status=S.SENT)
    refused = DataError("INSERT", {}, ValueError("value too long"))

    def record(session: Session, items: list[ReportToRecord], **kw: Any) -> list[Any]:
        if any(i.report.message_id == poison.id for i in items):
            if kw.get("isolate_errors", True) is False:
                raise refused
            return [
                refused if i.report.message_id == poison.id else record(session, [i])[0]
                for i in items
            ]
        return record_reports(session, items)

    monkeypatch.setattr(report_applier, "record_reports", record)
    append_reports(redis_client, [report_for(poison), report_for(good)])
    applier = ReportApplier(redis_client, sessions)
    assert applier.apply_batch() == 1  # the good one; the other is kept for another try
    assert statuses(session, [poison, good]) == [S.SENT, S.DELIVERED]
    assert [applier.apply_batch() for _ in range(report_applier.MAX_REFUSALS - 1)] == [0, 0, 0, 1]
    assert redis_client.xlen(DLR_STREAM_KEY) == 0
    assert "dlr.dropped" in caplog.text


def test_any_other_failure_keeps_the_reports(
    redis_client: redis.Redis,
    sessions: sessionmaker[Session],
    make_message: MakeMessage,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def not_migrated(session: Session, items: list[ReportToRecord], **kw: Any) -> list[Any]:
        raise ProgrammingError("SELECT", {}, Exception('relation "messages" does not exist'))

    monkeypatch.setattr(report_applier, "record_reports", not_migrated)
    append_reports(redis_client, [report_for(make_message(status=S.SENT))])
    applier = ReportApplier(redis_client, sessions)
    for _ in range(report_applier.MAX_REFUSALS * 2):
        with pytest.raises(DatabaseAway, match="does not exist"):
            applier.apply_batch()
    assert redis_client.xlen(DLR_STREAM_KEY) == 1 and pending(redis_client) == 1
