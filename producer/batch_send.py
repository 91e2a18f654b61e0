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

from models.status import MessageKind, MessageStatus
from models.tables import Suppression
from producer.api import Producer
from producer.errors import InvalidField
from producer.message_spec import check_message
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
    receipts: list[MessageReceipt] = []
    queued: list[str] = []
    with producer.sessions() as session:
        stopped: set[str] = set()
        if stop_list:
            listed = select(Suppression.number).where(Suppression.number.in_(set(targets)))
            stopped = set(session.scalars(listed))
        for number in targets:
            message, status = spec.add(session, number, suppressed=number in stopped)
            receipts.append(
                MessageReceipt(message.id, status.value, spec.sms.encoding.value, spec.sms.segments)
            )
            if status is S.QUEUED:
                queued.append(message.id)
        session.commit()

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
