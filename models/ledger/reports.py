"""Recording one delivery report against its message.

A plain function of a session and a parsed report (``models.reports``), so
the HTTP receiver, a replay tool and tests all share it; nothing here knows
about HTTP.

Decisions:

- **Matching.** panelsms reports carry our id (``transactionId``), matched on
  the primary key; brand reports carry the provider's ``smsID``, matched on
  ``Message.provider_message_id``. The caller may restrict matches to the
  messages of some provider accounts (``accounts``): the receiver passes the
  accounts of the report's adapter, for brand only those whose callback key
  matched. A report for a message of a renamed or removed account is then
  unmatched. Should two brand accounts ever hand out the same ``smsID``, the
  newest message wins.
- **Time.** The event, ``updated_at`` and ``finished_at`` carry the time *we*
  received the report, not the provider's: provider clocks drift, brand's
  ``date`` has no zone, and our own events stay in the order they happened.
  The provider's time stays in the event's ``payload`` (the report as sent:
  brand's ``date``, panelsms' ``timestamp``).
- **Every report is an event.** ``apply_status`` moves the row only when the
  state machine allows it, so a late ``sent`` after ``delivered``, a duplicate,
  or a ``failed`` after ``delivered`` is kept with ``applied=False`` and the
  final state sticks. A status we do not know is kept raw (payload and
  ``detail``) as ``unknown``, which moves a ``sending``/``sent`` row and never
  a final one.
- **Orphans.** A report that matches no message is kept in ``orphan_reports``
  (a brand report can overtake the worker's write of the ``smsID`` it is
  matched by). :func:`replay_orphans` applies the waiting ones once the worker
  stored the ids, and the sweeper retries and finally drops them after a day,
  so a fast report is never lost.
- **Locking.** The row is read ``FOR UPDATE`` on PostgreSQL. SQLite has no row
  locks, so the transaction starts with ``BEGIN IMMEDIATE`` (the database's
  write lock, waited for through the busy timeout): two reports for one
  message are applied one after the other, never both from the same old
  status. Reports are applied in arrival order on rows read once per batch, and
  written set-based: one UPDATE for the changed rows, one INSERT of the events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.orm import Session

from models.ledger.moves import moved_columns
from models.reports import DeliveryReport
from models.status import EventSource, MessageStatus
from models.tables import Message, MessageEvent, OrphanReport, utcnow

S = MessageStatus

# Statuses after which the row's error_code / error_detail say why.
_FAILURES = frozenset({S.FAILED, S.UNDELIVERED, S.EXPIRED})


@dataclass(frozen=True, slots=True)
class ReportResult:
    matched: bool  # a message was found; False: nothing was written
    changed: bool  # its status moved (False: a late or duplicate report, kept as an event)
    message_id: str | None = None
    status: MessageStatus | None = None  # the message's status afterwards
    provider: str | None = None  # the message's provider account
    sent_at: dt.datetime | None = None  # when it was sent, as known before this report (lag)


def record_report(
    session: Session,
    report: DeliveryReport,
    *,
    raw: dict[str, Any],
    accounts: Collection[str] | None = None,
    keep_orphan: bool = True,
) -> ReportResult:
    """Apply ``report`` to its message, keep it as an event, and commit.

    ``raw`` is the report as received (without credentials: it is stored).
    ``accounts`` limits matching to messages sent through those provider
    accounts; ``None`` matches any.
    """
    (result,) = _apply(session, [ReportToRecord(report, raw, accounts)], keep_orphans=keep_orphan)
    session.commit()  # also releases SQLite's write lock
    return result


@dataclass(frozen=True, slots=True)
class ReportToRecord:
    """One report for :func:`record_reports`; the arguments of :func:`record_report`."""

    report: DeliveryReport
    raw: dict[str, Any]
    accounts: Collection[str] | None
    # When we received it (a queued report is applied later); None: now.
    received_at: dt.datetime | None = None


def record_reports(
    session: Session, items: Sequence[ReportToRecord], *, isolate_errors: bool = True
) -> list[ReportResult | Exception]:
    """Record many reports in one transaction; a result or an error per item, in order.

    One commit for the batch instead of one per report, one locking read of
    all their messages, and set-based writes (one UPDATE executed for many
    rows, one INSERT of the events) is what lets the receiver keep up with a
    provider's burst of reports. The reports are applied in arrival order,
    exactly as one :func:`record_report` after the other would. If the batch
    fails as a whole (a deadlock with a worker's write, a row that cannot be
    stored), it is rolled back and every report is recorded on its own, so
    one bad report costs only itself. With ``isolate_errors=False`` the
    batch's error is raised instead (after the rollback): a caller that can
    tell a database outage from a bad report (the report queue's consumer)
    then decides, rather than paying one failed connection per report.
    """
    try:
        results: list[ReportResult | Exception] = list(_apply(session, items, keep_orphans=True))
        session.commit()
        return results
    except Exception:
        session.rollback()
        if not isolate_errors:
            raise
    results = []
    for item in items:
        try:
            (result,) = _apply(session, [item], keep_orphans=True)
            session.commit()
            results.append(result)
        except Exception as exc:
            session.rollback()
            results.append(exc)
    return results


# What a report may change on its message, read (and locked) before applying it.
_COLUMNS = (
    Message.id,
    Message.status,
    Message.provider,
    Message.provider_message_id,
    Message.created_at,
    Message.updated_at,
    Message.sent_at,
    Message.finished_at,
    Message.error_code,
    Message.error_detail,
)


def _apply(
    session: Session, items: Sequence[ReportToRecord], *, keep_orphans: bool
) -> list[ReportResult]:
    """Apply the reports in order; write the changed rows, events and orphans. No commit."""
    batch_now = utcnow()
    found = _MessagesOf(session, [item.report for item in items])
    results: list[ReportResult] = []
    events: list[dict[str, Any]] = []
    orphans: list[dict[str, Any]] = []
    changed_rows: dict[str, dict[str, Any]] = {}
    for item in items:
        report = item.report
        now = item.received_at or batch_now
        if not _can_match(report, item.accounts):
            results.append(ReportResult(matched=False, changed=False))
            continue
        row = found.match(report, item.accounts)
        if row is None:
            if keep_orphans:
                orphans.append(_orphan(report, item.raw, item.accounts, now))
            results.append(ReportResult(matched=False, changed=False))
            continue
        sent_at = row["sent_at"]  # before a move that may set it
        moved = moved_columns(S(row["status"]), report.status, sent_at=sent_at, now=now)
        events.append(
            {
                "message_id": row["id"],
                "status": report.status,
                "source": EventSource.DLR,
                "applied": moved is not None,
                "provider_code": report.error_code,
                "detail": _detail(report),
                "payload": item.raw,
                "created_at": now,
            }
        )
        if moved is not None:
            row.update(moved)
            if report.status in _FAILURES:
                row["error_code"] = report.error_code
                row["error_detail"] = report.error_detail or _default_failure(report)
            changed_rows[row["id"]] = row
        if report.provider_message_id is not None and row["provider_message_id"] is None:
            # A report that overtook the worker's write (matched by our id) and
            # names the provider's id: what the worker would have stored.
            row["provider_message_id"] = report.provider_message_id
            changed_rows[row["id"]] = row
        results.append(
            ReportResult(
                matched=True,
                changed=moved is not None,
                message_id=row["id"],
                status=S(row["status"]),
                provider=row["provider"],
                sent_at=sent_at,
            )
        )
    if changed_rows:
        updates = [
            {key: value for key, value in row.items() if key not in ("provider", "created_at")}
            for row in changed_rows.values()
        ]
        session.execute(update(Message), updates)  # by primary key, one executemany
    if events:
        session.execute(insert(MessageEvent), events)
    if orphans:
        session.execute(insert(OrphanReport), orphans)
    return results


class _MessagesOf:
    """The messages a batch of reports may match, read (and locked) at once."""

    def __init__(self, session: Session, reports: Sequence[DeliveryReport]) -> None:
        ids = sorted({r.message_id for r in reports if r.message_id is not None})
        sms_ids = sorted(
            {
                r.provider_message_id
                for r in reports
                if r.message_id is None and r.provider_message_id is not None
            }
        )
        self.by_id: dict[str, dict[str, Any]] = {}
        self.by_sms_id: dict[str, list[dict[str, Any]]] = {}
        if not ids and not sms_ids:
            return
        _lock_for_write(session)
        query = (
            select(*_COLUMNS)
            .where(or_(Message.id.in_(ids), Message.provider_message_id.in_(sms_ids)))
            .order_by(Message.id)  # one lock order for every batch: no deadlock between two
            .with_for_update()
        )
        for found in session.execute(query):
            row = dict(found._mapping)
            self.by_id[row["id"]] = row
            if row["provider_message_id"] is not None:
                self.by_sms_id.setdefault(row["provider_message_id"], []).append(row)

    def match(
        self, report: DeliveryReport, accounts: Collection[str] | None
    ) -> dict[str, Any] | None:
        """The newest message with the report's id among the accounts allowed."""
        if report.message_id is not None:
            candidates = [m for m in [self.by_id.get(report.message_id)] if m is not None]
        else:
            candidates = self.by_sms_id.get(report.provider_message_id or "", [])
        if accounts is not None:
            candidates = [m for m in candidates if m["provider"] in accounts]
        return max(candidates, key=lambda m: m["created_at"], default=None)


def replay_orphans(
    session: Session,
    *,
    status_field_of: Callable[[str], str],
    provider_message_ids: Collection[str] | None = None,
    message_ids: Collection[str] | None = None,
) -> int:
    """Apply waiting orphan reports whose message now exists; return how many.

    ``status_field_of`` names a vendor's status field by its adapter name
    (``providers.registry.report_status_field``: the vendors are not ours to
    know here), for the detail of a failure without a code.

    With no ids given, every waiting orphan is tried (the sweeper does that).
    Applied orphans are deleted; the rest keep waiting.
    """
    query = select(OrphanReport).order_by(OrphanReport.id)
    if provider_message_ids is not None or message_ids is not None:
        query = query.where(
            or_(
                OrphanReport.provider_message_id.in_(list(provider_message_ids or ())),
                OrphanReport.message_id.in_(list(message_ids or ())),
            )
        )
    orphans = list(session.scalars(query))
    session.commit()
    applied = 0
    for orphan in orphans:
        report = DeliveryReport(
            adapter=orphan.adapter,
            status=S(orphan.status),
            raw_status=orphan.raw_status,
            message_id=orphan.message_id,
            provider_message_id=orphan.provider_message_id,
            error_code=orphan.error_code,
            error_detail=orphan.error_detail,
            status_field=status_field_of(orphan.adapter),
        )
        accounts = orphan.accounts.split(",") if orphan.accounts is not None else None
        result = record_report(
            session, report, raw=orphan.payload or {}, accounts=accounts, keep_orphan=False
        )
        if result.matched:
            session.execute(delete(OrphanReport).where(OrphanReport.id == orphan.id))
            session.commit()
            applied += 1
    return applied


def drop_old_orphans(session: Session, *, older_than: dt.datetime) -> int:
    """Forget orphans nobody claimed (a report for a message we never sent)."""
    result = session.execute(delete(OrphanReport).where(OrphanReport.received_at < older_than))
    session.commit()
    return int(getattr(result, "rowcount", 0) or 0)


def _orphan(
    report: DeliveryReport,
    raw: dict[str, Any],
    accounts: Collection[str] | None,
    now: dt.datetime,
) -> dict[str, Any]:
    return {
        "adapter": report.adapter,
        "message_id": report.message_id,
        "provider_message_id": report.provider_message_id,
        "accounts": ",".join(sorted(accounts)) if accounts is not None else None,
        "status": report.status,
        "raw_status": report.raw_status,
        "error_code": report.error_code,
        "error_detail": report.error_detail,
        "payload": raw,
        "received_at": now,
    }


def _can_match(report: DeliveryReport, accounts: Collection[str] | None) -> bool:
    """A report with no id, or limited to no account, matches nothing (and is no orphan)."""
    if accounts is not None and not accounts:
        return False
    return report.message_id is not None or report.provider_message_id is not None


def _lock_for_write(session: Session) -> None:
    """On SQLite, take the write lock before reading (see the module docstring)."""
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    dbapi = connection.connection.dbapi_connection
    if dbapi is not None and not getattr(dbapi, "in_transaction", True):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _detail(report: DeliveryReport) -> str | None:
    if report.status is S.UNKNOWN:
        unmapped = f"unmapped {report.adapter} status {report.raw_status!r}"
        return f"{unmapped}: {report.error_detail}" if report.error_detail else unmapped
    return report.error_detail


def _default_failure(report: DeliveryReport) -> str:
    return f"delivery report: {report.adapter} {report.status_field} {report.raw_status}"
