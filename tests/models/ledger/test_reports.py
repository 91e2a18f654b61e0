"""record_report: a delivery report applied to its message, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from models.db import make_sessionmaker
from models.ledger.reports import (
    ReportResult,
    ReportToRecord,
    record_report,
    record_reports,
)
from models.reports import DeliveryReport
from models.status import EventSource
from models.status import MessageStatus as S
from models.tables import Message, MessageEvent, OrphanReport
from providers.brand.reports import parse_report as parse_brand_report
from providers.panelsms.reports import parse_report as parse_panelsms_report
from providers.registry import report_status_field

MakeMessage = Callable[..., Message]


def brand(sms_id: str, status_id: str) -> tuple[DeliveryReport, dict[str, Any]]:
    raw = {"smsID": sms_id, "number": "4917012345678", "statusID": status_id}
    raw["date"] = "2026-02-01 23:30:05"
    return parse_brand_report(raw), raw


def panelsms(
    transaction_id: str, status: str, code: int | None = None, description: str | None = None
) -> tuple[DeliveryReport, dict[str, Any]]:
    raw = {
        "transactionId": transaction_id,
        "status": status,
        "destination": "+1222333444",
        "timestamp": "2024-01-15T10:30:45Z",
        "errorCode": code,
        "errorDescription": description,
    }
    return parse_panelsms_report(raw), raw


def record(session: Session, pair: tuple[DeliveryReport, dict[str, Any]], **kw: Any) -> Any:
    report, raw = pair
    return record_report(session, report, raw=raw, **kw)


def events(session: Session, message: Message) -> list[MessageEvent]:
    query = select(MessageEvent).where(MessageEvent.message_id == message.id)
    return list(session.scalars(query.order_by(MessageEvent.id)))


def row(session: Session, message: Message) -> Message:
    session.expire_all()
    found = session.get(Message, message.id)
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("status_id", "expected", "changed"),
    [
        ("0", S.SENT, False),  # already sent
        ("1", S.DELIVERED, True),
        ("2", S.FAILED, True),
        ("3", S.SENT, False),  # pending: the provider has it
        ("4", S.FAILED, True),
        ("9", S.UNKNOWN, True),  # kept raw
    ],
)
def test_brand_status_is_applied_to_the_row_with_that_sms_id(
    session: Session, make_message: MakeMessage, status_id: str, expected: S, changed: bool
) -> None:
    make_message(provider="brand", status=S.SENT, provider_message_id="other")
    message = make_message(provider="brand", status=S.SENT, provider_message_id="777000001")
    result = record(session, brand("777000001", status_id), accounts=["brand"])
    assert result.matched and result.changed is changed
    assert result.message_id == message.id and result.status == expected
    assert row(session, message).status == expected
    [event] = events(session, message)
    assert (event.status, event.source, event.applied) == (expected, EventSource.DLR, changed)
    assert event.payload == {
        "smsID": "777000001",
        "number": "4917012345678",
        "statusID": status_id,
        "date": "2026-02-01 23:30:05",
    }


def test_panelsms_report_matches_our_id(session: Session, make_message: MakeMessage) -> None:
    message = make_message(status=S.SENT, provider_message_id=None)
    before = dt.datetime.now(dt.UTC)
    result = record(session, panelsms(message.id, "delivered"))
    assert (result.matched, result.changed, result.status) == (True, True, S.DELIVERED)
    stored = row(session, message)
    assert stored.status == S.DELIVERED
    # Our clock, not the provider's 2024 timestamp (which stays in the payload).
    assert stored.finished_at is not None and stored.finished_at >= before - dt.timedelta(seconds=1)
    [event] = events(session, message)
    assert event.created_at == stored.finished_at
    assert event.payload is not None and event.payload["timestamp"] == "2024-01-15T10:30:45Z"


@pytest.mark.parametrize("late", ["sent", "failed", "undelivered", "delivered"])
def test_a_final_state_sticks(session: Session, make_message: MakeMessage, late: str) -> None:
    message = make_message(status=S.SENT)
    assert record(session, panelsms(message.id, "delivered")).changed
    finished = row(session, message).finished_at
    result = record(session, panelsms(message.id, late, code=11))
    assert (result.matched, result.changed, result.status) == (True, False, S.DELIVERED)
    stored = row(session, message)
    assert (stored.status, stored.finished_at, stored.error_code) == (S.DELIVERED, finished, None)
    assert [(e.status, e.applied) for e in events(session, message)] == [
        (S.DELIVERED, True),
        (S(late), False),
    ]


def test_brand_failed_after_delivered_stays_delivered(
    session: Session, make_message: MakeMessage
) -> None:
    message = make_message(provider="brand", status=S.SENT, provider_message_id="42")
    record(session, brand("42", "1"))
    assert not record(session, brand("42", "2")).changed
    assert row(session, message).status == S.DELIVERED


def test_an_unknown_status_is_kept_as_an_event(session: Session, make_message: MakeMessage) -> None:
    message = make_message(status=S.SENT)
    result = record(session, panelsms(message.id, "DELIVRD"))
    assert (result.changed, result.status) == (True, S.UNKNOWN)
    [event] = events(session, message)
    assert event.status == S.UNKNOWN and event.detail == "unmapped panelsms status 'DELIVRD'"
    assert event.payload is not None and event.payload["status"] == "DELIVRD"


def test_an_unknown_status_never_moves_a_final_state(
    session: Session, make_message: MakeMessage
) -> None:
    message = make_message(status=S.DELIVERED)
    assert not record(session, panelsms(message.id, "DELIVRD")).changed
    assert row(session, message).status == S.DELIVERED
    assert [(e.status, e.applied) for e in events(session, message)] == [(S.UNKNOWN, False)]


def test_an_unmatched_report_writes_nothing(session: Session, make_message: MakeMessage) -> None:
    message = make_message(provider="brand", status=S.SENT, provider_message_id="1")
    assert not record(session, panelsms("no-such-id", "delivered")).matched
    assert not record(session, brand("2", "1")).matched
    # Only messages of the accounts given: this smsID belongs to "brand".
    result = record(session, brand("1", "1"), accounts=["other-brand"])
    assert (result.matched, result.changed, result.message_id) == (False, False, None)
    assert not record(session, brand("1", "1"), accounts=[]).matched
    assert row(session, message).status == S.SENT
    assert session.scalars(select(MessageEvent)).all() == []


def test_a_report_overtaking_the_worker_moves_sending_to_delivered(
    session: Session, make_message: MakeMessage
) -> None:
    message = make_message(status=S.SENDING)
    assert record(session, panelsms(message.id, "delivered")).changed
    stored = row(session, message)
    assert stored.status == S.DELIVERED
    assert stored.provider_message_id == message.id  # what panelsms knows it by
    # The worker's "sent", arriving after, changes nothing.
    assert not record(session, panelsms(message.id, "sent")).changed
    assert row(session, message).status == S.DELIVERED


def test_undelivered_keeps_the_error_code(session: Session, make_message: MakeMessage) -> None:
    message = make_message(status=S.SENT)
    result = record(session, panelsms(message.id, "undelivered", 11, "Destination barred"))
    assert result.status == S.UNDELIVERED
    stored = row(session, message)
    assert (stored.error_code, stored.error_detail) == (11, "Destination barred")
    [event] = events(session, message)
    assert (event.provider_code, event.detail) == (11, "Destination barred")


def test_brand_failure_without_a_code_says_which_status(
    session: Session, make_message: MakeMessage
) -> None:
    message = make_message(provider="brand", status=S.SENT, provider_message_id="9")
    record(session, brand("9", "4"))
    stored = row(session, message)
    assert (stored.status, stored.error_code) == (S.FAILED, None)
    assert stored.error_detail == "delivery report: brand statusID 4"


def test_concurrent_reports_for_one_message_apply_one_final_state(
    engine: Engine, make_message: MakeMessage
) -> None:
    message = make_message(status=S.SENT)
    statuses = ["delivered", "failed", "undelivered", "expired", "sent", "delivered"]
    start = threading.Barrier(len(statuses))
    errors: list[BaseException] = []
    sessions = make_sessionmaker(engine)

    def report(status: str) -> None:
        try:
            with sessions() as own:
                start.wait()
                record(own, panelsms(message.id, status))
        except BaseException as exc:  # pragma: no cover - shown by the assert
            errors.append(exc)

    threads = [threading.Thread(target=report, args=(s,)) for s in statuses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with sessions() as check:
        final = check.get(Message, message.id)
        applied = [e for e in events(check, message) if e.applied]
    assert final is not None and len(applied) == 1  # never two final states
    assert final.status == applied[0].status


def test_a_brand_report_that_overtakes_the_worker_waits_and_is_applied(
    session: Session, make_message: Callable[..., Message]
) -> None:
    from models.ledger.reports import replay_orphans
    from models.tables import OrphanReport
    from providers.brand.reports import parse_report as parse_brand_report

    message = make_message(provider="brand", status=S.SENDING)
    report = parse_brand_report({"smsID": "sms-77", "statusID": "1", "number": "4915550000000"})
    result = record_report(session, report, raw={"smsID": "sms-77", "statusID": "1"})
    assert not result.matched
    assert session.scalars(select(OrphanReport.provider_message_id)).all() == ["sms-77"]

    # The worker stores the provider's id, then replays what waited for it.
    message.status = S.SENT
    message.provider_message_id = "sms-77"
    session.commit()
    assert (
        replay_orphans(
            session, status_field_of=report_status_field, provider_message_ids=["sms-77"]
        )
        == 1
    )
    session.expire_all()
    row = session.get(Message, message.id)
    assert row is not None and row.status == S.DELIVERED
    assert session.scalars(select(OrphanReport)).all() == []


def test_orphans_nobody_claims_are_dropped_after_a_while(session: Session) -> None:
    from models.ledger.reports import drop_old_orphans, replay_orphans
    from providers.brand.reports import parse_report as parse_brand_report

    report = parse_brand_report({"smsID": "never", "statusID": "1"})
    record_report(session, report, raw={})
    assert replay_orphans(session, status_field_of=report_status_field) == 0
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    assert drop_old_orphans(session, older_than=later) == 1


# --- record_reports: many reports, one transaction ---------------------------


def to_record(pair: tuple[DeliveryReport, dict[str, Any]], accounts: list[str]) -> ReportToRecord:
    return ReportToRecord(pair[0], pair[1], accounts)


def test_a_batch_applies_every_report_in_order_and_keeps_the_unmatched(
    session: Session, make_message: MakeMessage
) -> None:
    first = make_message(provider="panel", status=S.SENT)
    second = make_message(provider="panel", status=S.SENT)
    items = [
        to_record(panelsms(second.id, "delivered"), ["panel"]),
        to_record(panelsms("no-such-id", "delivered"), ["panel"]),
        to_record(panelsms(first.id, "failed", 11, "barred"), ["panel"]),
        to_record(panelsms(second.id, "failed"), ["panel"]),  # too late: delivered sticks
    ]
    results = record_reports(session, items)
    assert [r.status if isinstance(r, ReportResult) else r for r in results] == [
        S.DELIVERED,
        None,
        S.FAILED,
        S.DELIVERED,
    ]
    assert [isinstance(r, ReportResult) and r.changed for r in results] == [
        True,
        False,
        True,
        False,
    ]
    assert row(session, first).error_code == 11
    assert row(session, second).status == S.DELIVERED
    assert [e.applied for e in events(session, second)] == [True, False]
    orphans = list(session.scalars(select(OrphanReport)))
    assert [o.message_id for o in orphans] == ["no-such-id"]


def test_a_report_that_cannot_be_written_fails_alone(
    session: Session, make_message: MakeMessage
) -> None:
    good = make_message(provider="panel", status=S.SENT)
    bad_report, _raw = panelsms(good.id, "delivered")
    unstorable = {"payload": object()}  # not JSON: the flush fails
    items = [
        ReportToRecord(*panelsms(good.id, "delivered"), ["panel"]),
        ReportToRecord(bad_report, unstorable, ["panel"]),
    ]
    results = record_reports(session, items)
    assert isinstance(results[0], ReportResult) and results[0].status == S.DELIVERED
    assert isinstance(results[1], Exception)
    assert row(session, good).status == S.DELIVERED


def test_a_queued_report_carries_the_time_it_was_received(
    session: Session, make_message: MakeMessage
) -> None:
    message = make_message(provider="panel", status=S.SENT)
    received = dt.datetime(2026, 2, 1, 12, 0, 5, tzinfo=dt.UTC)
    item = ReportToRecord(*panelsms(message.id, "delivered"), ["panel"], received_at=received)
    record_reports(session, [item])
    stored = row(session, message)
    assert (stored.finished_at, stored.updated_at) == (received, received)
    assert [e.created_at for e in events(session, message)] == [received]


def test_a_batch_error_is_raised_when_not_isolated(
    session: Session, make_message: MakeMessage
) -> None:
    good = make_message(provider="panel", status=S.SENT)
    report, _raw = panelsms(good.id, "delivered")
    items = [
        ReportToRecord(*panelsms(good.id, "delivered"), ["panel"]),
        ReportToRecord(report, {"payload": object()}, ["panel"]),
    ]
    with pytest.raises(Exception, match="JSON serializable"):
        record_reports(session, items, isolate_errors=False)
    assert row(session, good).status == S.SENT  # rolled back as a whole
    assert events(session, good) == []


def test_a_report_applied_twice_changes_nothing_on_its_message(
    session: Session, make_message: MakeMessage
) -> None:
    # A queued report applied, and applied again by an applier that took it
    # over before the first could acknowledge it.
    message = make_message(provider="panel", status=S.SENT)
    item = ReportToRecord(*panelsms(message.id, "undelivered", 11, "barred"), ["panel"])
    columns = [c.key for c in Message.__table__.columns]

    record_reports(session, [item])
    once = {c: getattr(row(session, message), c) for c in columns}
    [result] = record_reports(session, [item])
    twice = {c: getattr(row(session, message), c) for c in columns}

    assert isinstance(result, ReportResult) and not result.changed
    assert once == twice and once["status"] == S.UNDELIVERED and once["error_code"] == 11
    assert [e.applied for e in events(session, message)] == [True, False]
