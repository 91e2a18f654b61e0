"""One text to a list of numbers (``POST /v1/messages`` with a list ``to``).

The same checks and the same rows as :meth:`producer.api.Producer.send`, but
for up to ``SMSQ_MAX_RECIPIENTS`` numbers at once, all or nothing:

- every input is checked before anything is written; the first bad number
  raises :class:`~producer.errors.InvalidField` naming it by position
  (``to[3]``), so a caller fixes its list and sends it again without
  wondering which half went out;
- the rows (each with its first event) are written in one transaction, the
  stop list is read in one query, and the committed ids are enqueued in
  tasks of ``SMSQ_BATCH_SIZE`` ids: a thousand numbers cost one commit and
  one or two publishes, not a thousand of each.

A number listed twice gets two messages: the caller asked for it (campaigns,
in contrast, send once per number). There is no per-message idempotency key
here; the HTTP API's ``Idempotency-Key`` covers the whole request.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from models.status import MessageKind, MessageStatus
from models.tables import Message, Suppression, utcnow
from producer.api import Producer
from producer.errors import InvalidField
from producer.message_spec import MessageSpec, check_message, insert_rows
from producer.receipts import MessageReceipt
from producer.validation import (
    normalize_number,
)

log = structlog.get_logger("smsq.producer")

S = MessageStatus


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
    """Accept ``text`` for every number in ``numbers``; receipts in input order."""
    settings = producer.settings
    now = producer.clock()
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
        now=now,
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
    with producer.sessions() as session:
        stopped: set[str] = set()
        if stop_list:
            listed = select(Suppression.number).where(Suppression.number.in_(set(targets)))
            stopped = set(session.scalars(listed))
        rows = [spec.row(number, suppressed=number in stopped) for number in targets]
        insert_rows(session, rows, now)
        session.commit()
    receipts = [spec.receipt(row) for row in rows]
    queued = [row["id"] for row in rows if row["status"] == S.QUEUED]

    size = settings.batch_size
    for start in range(0, len(queued), size):
        producer.enqueue(queued[start : start + size], queue=spec.queue, eta=spec.send_at)
    log.info(
        "messages accepted",
        kind=spec.kind.value,
        messages=len(receipts),
        queued=len(queued),
        suppressed=sum(r.status == S.SUPPRESSED for r in receipts),
        client_id=client_id,
    )
    return receipts


# --- many independent single messages, one transaction ------------------------


@dataclass(frozen=True, slots=True)
class CheckedSend:
    """One single-message request, already checked (number and fields)."""

    number: str
    spec: MessageSpec
    idempotency_key: str | None = None


def send_each(producer: Producer, items: Sequence[CheckedSend]) -> list[MessageReceipt | Exception]:
    """What :meth:`Producer.send_checked` does for each item, in one commit.

    The HTTP API's group commit hands the single sends that arrive together
    here: one stop-list query, one idempotency query, one commit, and one
    Celery task per queue and send time instead of one per message. An item
    whose idempotency key was used before (or earlier in the batch) gets the
    first message's receipt, as ``send`` would. If the commit fails (a key
    raced with a request outside the batch), the items are sent one by one,
    so each gets the answer ``send`` would have given it.
    """
    try:
        receipts, queued = _store_each(producer, items)
    except IntegrityError:
        return [_send_alone(producer, item) for item in items]
    except Exception as exc:  # the database does not answer: every request fails alike
        return [exc] * len(items)
    size = producer.settings.batch_size
    for (queue, eta), ids in queued.items():
        for start in range(0, len(ids), size):
            producer.enqueue(ids[start : start + size], queue=queue, eta=eta)
    return list(receipts)


def _store_each(
    producer: Producer, items: Sequence[CheckedSend]
) -> tuple[list[MessageReceipt], dict[tuple[str, dt.datetime | None], list[str]]]:
    receipts: list[MessageReceipt] = []
    queued: dict[tuple[str, dt.datetime | None], list[str]] = {}
    with producer.sessions() as session:
        listed = {i.number for i in items if i.spec.stop_list}
        stopped = set(
            session.scalars(select(Suppression.number).where(Suppression.number.in_(listed)))
        )
        keyed = {(i.spec.client_id, i.idempotency_key) for i in items if i.idempotency_key}
        earlier: dict[tuple[str, str | None], MessageReceipt] = {}
        if keyed:
            found = session.execute(
                select(
                    Message.client_id,
                    Message.idempotency_key,
                    Message.id,
                    Message.status,
                    Message.encoding,
                    Message.segments,
                ).where(Message.idempotency_key.in_({key for _, key in keyed}))
            )
            for hit in found:
                if (hit.client_id, hit.idempotency_key) in keyed:
                    earlier[(hit.client_id, hit.idempotency_key)] = MessageReceipt(
                        hit.id, hit.status, hit.encoding, hit.segments
                    )
        new_rows: list[dict[str, Any]] = []
        for item in items:
            spec = item.spec
            key = (spec.client_id, item.idempotency_key)
            if item.idempotency_key and key in earlier:
                receipts.append(earlier[key])
                continue
            row = spec.row(
                item.number,
                suppressed=spec.stop_list and item.number in stopped,
                idempotency_key=item.idempotency_key,
            )
            new_rows.append(row)
            receipt = spec.receipt(row)
            receipts.append(receipt)
            if item.idempotency_key:
                earlier[key] = receipt
            if row["status"] == S.QUEUED:
                queued.setdefault((spec.queue, spec.send_at), []).append(row["id"])
        insert_rows(session, new_rows, min((i.spec.now for i in items), default=utcnow()))
        session.commit()
    return receipts, queued


def _send_alone(producer: Producer, item: CheckedSend) -> MessageReceipt | Exception:
    try:
        return producer.send_checked(item.number, item.spec, item.idempotency_key)
    except Exception as exc:
        return exc
