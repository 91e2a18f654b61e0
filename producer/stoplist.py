"""The stop list: numbers that get no campaign or marketing SMS.

A number on it is still accepted by :meth:`producer.api.Producer.send` and by
campaign ingestion, but recorded as ``suppressed`` and never sent (see
``docs/pipeline.md``). These functions keep the list; the command line
(``smsq stoplist``) and the HTTP API call them.

Numbers are stored in E.164, normalized like every recipient
(:func:`producer.numbers.normalize_number`), so ``+49 170 1234567`` and
``0049 170 1234567`` are the same entry. Adding is idempotent: a number
already listed is counted in ``already`` and keeps its first reason and
date. Large imports are written :data:`CHUNK` numbers at a time with
``INSERT ... ON CONFLICT DO NOTHING``, so a concurrent import of the same
numbers cannot fail with a duplicate key.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import structlog
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models.tables import Suppression, utcnow
from producer.csv_rows import BadRow, read_csv_rows
from producer.errors import InvalidField
from producer.numbers import normalize_number
from producer.receipts import MAX_ERRORS, VALUE_SHOWN, RejectedRow
from producer.validation import check_one_line

log = structlog.get_logger("smsq.producer")

CHUNK = 1000  # numbers per INSERT (and per lookup of what is already listed)
REASON_MAX = 200  # suppressions.reason
LIST_LIMIT_MAX = 10_000
# The detail of the first event of a message whose number is on the list.
SUPPRESSED_DETAIL = "on the stop list"


@dataclass(slots=True)
class StoplistResult:
    """What an add or import did.

    ``errors`` holds the first :data:`producer.receipts.MAX_ERRORS` rows that
    were not numbers (row = 1-based position in the input, header not
    counted); ``rejected`` counts them all.
    """

    added: int = 0
    already: int = 0
    errors: list[RejectedRow] = field(default_factory=list)
    rejected: int = 0

    def reject(self, row: int, value: str, reason: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(RejectedRow(row, value[:VALUE_SHOWN], reason))


def add_numbers(session: Session, numbers: Iterable[str], reason: str = "") -> StoplistResult:
    """Put ``numbers`` on the stop list; invalid ones are reported, not raised.

    Raises :class:`InvalidField` ("reason") only for a reason that does not fit.
    """
    return _add(session, enumerate(numbers, start=1), _check_reason(reason))


def import_csv(
    session: Session, chunks: Iterable[bytes], *, column: str = "phone", reason: str = ""
) -> StoplistResult:
    """Add the numbers in ``column`` of a CSV given as byte chunks (a stream).

    Raises :class:`InvalidField` ("file") when the header is unreadable or
    lacks ``column``; a bad row (wrong column count, not UTF-8, empty number)
    is reported in the result with its row number.
    """
    checked = _check_reason(reason)
    result = StoplistResult()

    def numbers() -> Iterator[tuple[int, str]]:
        for row_no, row in enumerate(read_csv_rows(chunks, phone_column=column), start=1):
            if isinstance(row, BadRow):
                result.reject(row_no, row.value, row.reason)
            else:
                yield row_no, row.get(column, "")

    return _add(session, numbers(), checked, result)


def remove_number(session: Session, number: str) -> bool:
    """Take ``number`` off the list; False when it was not on it.

    Raises :class:`InvalidField` ("number") when it is not a phone number.
    """
    e164 = normalize_number(number, field="number")
    result = session.execute(delete(Suppression).where(Suppression.number == e164))
    session.commit()
    removed = bool(getattr(result, "rowcount", 0))
    log.info("stop list number removed", removed=removed)
    return removed


def list_numbers(
    session: Session, *, limit: int = 100, after: str | None = None
) -> list[Suppression]:
    """Entries in number order, ``limit`` at a time; pass the last number as ``after``."""
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise InvalidField("limit", f"must be between 1 and {LIST_LIMIT_MAX}")
    query = select(Suppression).order_by(Suppression.number).limit(limit)
    if after is not None:
        query = query.where(Suppression.number > after)
    return list(session.scalars(query))


def is_listed(session: Session, number: str) -> bool:
    """Whether ``number`` (any usual form) is on the stop list."""
    e164 = normalize_number(number, field="number")
    return session.get(Suppression, e164) is not None


# --- writing -----------------------------------------------------------------


def _check_reason(reason: str) -> str:
    if not isinstance(reason, str):
        raise InvalidField("reason", f"must be a string, not {type(reason).__name__}")
    reason = reason.strip()
    if len(reason) > REASON_MAX:
        raise InvalidField("reason", f"at most {REASON_MAX} characters, got {len(reason)}")
    return check_one_line("reason", reason)


def _add(
    session: Session,
    numbered: Iterable[tuple[int, str]],
    reason: str,
    result: StoplistResult | None = None,
) -> StoplistResult:
    result = result or StoplistResult()
    pending: dict[str, int] = {}  # e164 -> row, in input order, one chunk
    for row_no, value in numbered:
        try:
            e164 = normalize_number(value, field="number")
        except InvalidField as exc:
            result.reject(row_no, value if isinstance(value, str) else repr(value), exc.reason)
            continue
        if e164 in pending:
            result.already += 1  # twice in the input: listed once
            continue
        pending[e164] = row_no
        if len(pending) >= CHUNK:
            _insert(session, list(pending), reason, result)
            pending.clear()
    if pending:
        _insert(session, list(pending), reason, result)
    log.info(
        "stop list numbers added",
        added=result.added,
        already=result.already,
        rejected=result.rejected,
    )
    return result


def _insert(session: Session, numbers: list[str], reason: str, result: StoplistResult) -> None:
    """Insert what is new of ``numbers``; one commit per chunk (imports can be large)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = utcnow()
    statement = (
        insert(Suppression)
        .values([{"number": n, "reason": reason, "created_at": now} for n in numbers])
        .on_conflict_do_nothing(index_elements=[Suppression.number])
        .returning(Suppression.number)
    )
    added = len(session.execute(statement).all())
    session.commit()
    result.added += added
    result.already += len(numbers) - added
