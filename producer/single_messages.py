"""Single messages (OTP, transactional; not campaigns): the one path that
stores them and enqueues them.

Every non-campaign send goes through :func:`store_and_enqueue`: one number
(:meth:`producer.api.Producer.send`, via :func:`send_one`), one text to a
list of numbers (:func:`send_many`), and the HTTP API's group commit of
independent sends arriving together (:func:`send_each`). For any number of
checked requests it makes one stop-list query, one idempotency query (when a
key is given), one transaction writing the rows with their first events, and
then, only once committed, one Celery task per queue, send time and
``SMSQ_BATCH_SIZE`` ids. The row is the source of truth: a broker that is
down fails no call (:meth:`~producer.api.Producer.enqueue` logs it, the
worker's sweeper enqueues later), and a worker never receives an id it
cannot find.

What differs between the three is only what they check before and how they
answer a lost idempotency race:

- :func:`send_one` answers a concurrent request's message when that request
  won the race for the same ``(client_id, idempotency_key)``;
- :func:`send_many` is all or nothing: every number is checked before
  anything is written, the first bad one raises
  :class:`~producer.errors.InvalidField` naming its position (``to[3]``). A
  number listed twice gets two messages (campaigns, in contrast, send once
  per number); there is no per-message key (the HTTP ``Idempotency-Key``
  covers the whole request);
- :func:`send_each` answers each item on its own: when the batch's commit
  fails on a key (a request outside the batch raced it) the items are sent
  one by one through :func:`send_one`.

(Campaign messages take the other path, :mod:`producer.campaign_ingestion`,
built for a million rows.)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.status import MessageKind, MessageStatus
from models.tables import Message, Suppression
from producer.errors import InvalidField
from producer.message_spec import MessageSpec, check_message, insert_rows
from producer.receipts import MessageReceipt
from producer.validation import normalize_number

if TYPE_CHECKING:  # the producer calls this module: no import at run time
    from producer.api import Producer

log = structlog.get_logger("smsq.producer")

S = MessageStatus

# (client_id, idempotency_key): a key is unique per client.
IdempotencyKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class CheckedSend:
    """One single-message request, already checked (number and fields)."""

    number: str
    spec: MessageSpec
    idempotency_key: str | None = None

    def __post_init__(self) -> None:
        # The number's route must carry the message (producer.routing):
        # refused here, per request, never inside a shared group commit.
        self.spec.routing.destination(self.number)


# --- the one path ---------------------------------------------------------------


def store_and_enqueue(producer: Producer, items: Sequence[CheckedSend]) -> list[MessageReceipt]:
    """Store ``items`` in one transaction, then enqueue the queued ones.

    Receipts come in the order of ``items``. An item whose key was used
    before, or earlier in ``items``, gets the first message's receipt and
    writes nothing. Raises :class:`~sqlalchemy.exc.IntegrityError` when a
    concurrent request committed one of the keys first (nothing is written
    then), and any database error as it comes.
    """
    receipts, queued = _store(producer, items)
    size = producer.settings.batch_size
    for (queue, eta), ids in queued.items():
        for start in range(0, len(ids), size):
            producer.enqueue(ids[start : start + size], queue=queue, eta=eta)
    return receipts


def _store(
    producer: Producer, items: Sequence[CheckedSend]
) -> tuple[list[MessageReceipt], dict[tuple[str, dt.datetime | None], list[str]]]:
    """Write the rows and their first events; commit. Returns the receipts
    and the ids to enqueue, by queue and send time."""
    receipts: list[MessageReceipt] = []
    queued: dict[tuple[str, dt.datetime | None], list[str]] = {}
    with producer.sessions() as session:
        stopped = _stop_listed(session, {i.number for i in items if i.spec.stop_list})
        earlier = _earlier_messages(
            session, {(i.spec.client_id, i.idempotency_key) for i in items if i.idempotency_key}
        )
        new_rows: list[dict[str, Any]] = []
        for item in items:
            spec, key = item.spec, item.idempotency_key
            if key is not None and (spec.client_id, key) in earlier:
                receipts.append(earlier[(spec.client_id, key)])
                continue
            row = spec.row(
                item.number,
                suppressed=spec.stop_list and item.number in stopped,
                idempotency_key=key,
            )
            new_rows.append(row)
            receipt = spec.receipt(row)
            receipts.append(receipt)
            if key is not None:
                earlier[(spec.client_id, key)] = receipt
            if row["status"] == S.QUEUED:
                queued.setdefault((spec.queue, spec.send_at), []).append(row["id"])
        if new_rows:
            insert_rows(session, new_rows, min(i.spec.now for i in items))
            session.commit()
    return receipts, queued


def _stop_listed(session: Session, numbers: set[str]) -> set[str]:
    if not numbers:
        return set()
    return set(session.scalars(select(Suppression.number).where(Suppression.number.in_(numbers))))


def _earlier_messages(
    session: Session, keys: set[IdempotencyKey]
) -> dict[IdempotencyKey, MessageReceipt]:
    """The receipts of the messages already stored under ``keys``."""
    if not keys:
        return {}
    # Both columns in the WHERE, so the unique (client_id, idempotency_key)
    # index serves it; pairs that only cross-match are dropped below.
    found = session.execute(
        select(
            Message.client_id,
            Message.idempotency_key,
            Message.id,
            Message.status,
            Message.encoding,
            Message.segments,
        ).where(
            Message.client_id.in_({client for client, _ in keys}),
            Message.idempotency_key.in_({key for _, key in keys}),
        )
    )
    return {
        (hit.client_id, hit.idempotency_key): MessageReceipt(
            hit.id, hit.status, hit.encoding, hit.segments
        )
        for hit in found
        if (hit.client_id, hit.idempotency_key) in keys
    }


# --- one, a list, a batch -------------------------------------------------------


def send_one(producer: Producer, item: CheckedSend) -> MessageReceipt:
    """Store and enqueue one checked message; see :meth:`producer.api.Producer.send`."""
    try:
        return store_and_enqueue(producer, [item])[0]
    except IntegrityError:
        # A concurrent call with the same key committed between our lookup
        # and our insert: its message is the answer.
        key = item.idempotency_key
        if key is None:
            raise
        with producer.sessions() as session:
            existing = _earlier_messages(session, {(item.spec.client_id, key)})
        if not existing:
            raise
        return next(iter(existing.values()))


def send_many(
    producer: Producer,
    numbers: Sequence[str],
    text: str,
    *,
    sender: str | None = None,
    kind: str = MessageKind.TRANSACTIONAL,
    send_at: str | dt.datetime | None = None,
    provider: str | None = None,
    callback_url: str | None = None,
    validity: int | None = None,
    stop_list: bool = True,
    client_id: str = "",
) -> list[MessageReceipt]:
    """Accept ``text`` for every number in ``numbers`` (at most
    ``SMSQ_MAX_RECIPIENTS``), all or nothing; receipts in input order."""
    settings = producer.settings
    if isinstance(numbers, (str, bytes)) or not isinstance(numbers, Sequence):
        raise InvalidField("to", "must be a list of phone numbers")
    if not numbers:
        raise InvalidField("to", "must list at least one number")
    if len(numbers) > settings.max_recipients:
        raise InvalidField(
            "to", f"at most {settings.max_recipients} numbers in one request, got {len(numbers)}"
        )
    targets = [normalize_number(raw, field=f"to[{i}]") for i, raw in enumerate(numbers)]
    spec = check_message(
        settings,
        now=producer.clock(),
        text=text,
        kind=kind,
        send_at=send_at,
        provider=provider,
        validity=validity,
        sender=sender,
        callback_url=callback_url,
        stop_list=stop_list,
        flash=False,
        client_id=client_id,
        idempotency_key=None,
    )
    receipts = store_and_enqueue(producer, [CheckedSend(number, spec) for number in targets])
    log.info(
        "messages accepted",
        kind=spec.kind.value,
        messages=len(receipts),
        queued=sum(r.status == S.QUEUED for r in receipts),
        suppressed=sum(r.status == S.SUPPRESSED for r in receipts),
        client_id=client_id,
    )
    return receipts


def send_each(producer: Producer, items: Sequence[CheckedSend]) -> list[MessageReceipt | Exception]:
    """What :func:`send_one` does for each item, in one commit.

    The HTTP API's group commit hands the single sends that arrive together
    here. An item whose idempotency key was used before (or earlier in the
    batch) gets the first message's receipt, as ``send`` would. If the commit
    fails on a key (it raced with a request outside the batch), the items are
    sent one by one, so each gets the answer ``send`` would have given it.
    """
    try:
        return list(store_and_enqueue(producer, items))
    except IntegrityError:
        return [_send_alone(producer, item) for item in items]
    except Exception as exc:  # the database does not answer: every request fails alike
        return [exc] * len(items)


def _send_alone(producer: Producer, item: CheckedSend) -> MessageReceipt | Exception:
    try:
        return send_one(producer, item)
    except Exception as exc:
        return exc
