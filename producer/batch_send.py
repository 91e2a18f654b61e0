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

import structlog
from sqlalchemy import select

from models.ids import new_id
from models.status import EventSource, MessageKind, MessageStatus
from models.tables import Message, Suppression
from models.transitions import apply_status
from producer.api import Producer
from producer.errors import InvalidField
from producer.receipts import MessageReceipt
from producer.validation import (
    check_callback_url,
    check_idempotency,
    check_kind,
    check_sender,
    check_text,
    normalize_number,
    parse_send_at,
    resolve_provider,
    resolve_validity,
)
from smsq.names import QUEUE_FOR_KIND

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
    message_kind = check_kind(kind)
    targets = [normalize_number(raw, field=f"to[{i}]") for i, raw in enumerate(numbers)]
    sms = check_text(text, max_parts=settings.max_parts)
    when = parse_send_at(send_at, now=now, tz=settings.timezone)
    account = resolve_provider(provider, settings)
    seconds = resolve_validity(validity, message_kind, settings)
    sender = check_sender(sender)
    callback_url = check_callback_url(callback_url, settings, signed_by_key=bool(client_id))
    check_idempotency(client_id, None)

    scheduled = when is not None and (when - now).total_seconds() > settings.schedule_horizon
    usual = S.SCHEDULED if scheduled else S.QUEUED
    expires_at = (when or now) + dt.timedelta(seconds=seconds)
    receipts: list[MessageReceipt] = []
    queued: list[str] = []
    with producer.sessions() as session:
        stopped: set[str] = set()
        if stop_list:
            listed = select(Suppression.number).where(Suppression.number.in_(set(targets)))
            stopped = set(session.scalars(listed))
        for number in targets:
            message = Message(
                id=new_id(),
                to=number,
                text=sms.text,
                sender=sender,
                kind=message_kind.value,
                provider=account,
                status=S.ACCEPTED.value,
                encoding=sms.encoding.value,
                segments=sms.segments,
                stop_list=stop_list,
                flash=False,
                callback_url=callback_url,
                client_id=client_id,
                idempotency_key=None,
                send_at=when,
                expires_at=expires_at,
                created_at=now,
                updated_at=now,
            )
            session.add(message)
            target = S.SUPPRESSED if number in stopped else usual
            apply_status(
                session,
                message,
                target,
                source=EventSource.PRODUCER,
                detail="on the stop list" if target is S.SUPPRESSED else None,
                at=now,
            )
            receipts.append(
                MessageReceipt(message.id, target.value, sms.encoding.value, sms.segments)
            )
            if target is S.QUEUED:
                queued.append(message.id)
        session.commit()

    queue = QUEUE_FOR_KIND[message_kind]
    size = settings.batch_size
    for start in range(0, len(queued), size):
        producer.enqueue(queued[start : start + size], queue=queue, eta=when)
    log.info(
        "messages accepted",
        kind=message_kind.value,
        messages=len(receipts),
        queued=len(queued),
        suppressed=sum(r.status == S.SUPPRESSED for r in receipts),
        client_id=client_id,
    )
    return receipts
