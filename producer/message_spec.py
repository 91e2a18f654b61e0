"""One place for what a single message request is and becomes.

``Producer.send`` (one number) and ``single_messages.send_many`` (a list) accept
the same fields, check them the same way and write the same rows; the
checks, the first status and the row are defined here once (and stored by
the one path of :mod:`producer.single_messages`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from models.ids import new_id
from models.ledger import insert_new_messages
from models.sms_text import SmsText
from models.status import EventSource, MessageKind, MessageStatus
from producer.errors import InvalidField
from producer.receipts import MessageReceipt
from producer.routing import Routing, resolve_routing
from producer.stoplist import SUPPRESSED_DETAIL
from producer.validation import (
    check_callback_url,
    check_idempotency,
    check_kind,
    check_sender,
    check_text,
    parse_send_at,
    resolve_validity,
)
from smsq.core.names import QUEUE_FOR_KIND
from smsq.core.settings import Settings

S = MessageStatus


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """A checked request: everything of a message row but its number and id."""

    kind: MessageKind
    sms: SmsText
    send_at: dt.datetime | None
    routing: Routing  # the provider account, or a route, of each number
    sender: str | None
    callback_url: str | None
    expires_at: dt.datetime
    scheduled: bool  # send_at beyond the horizon: waits in the DB, not in Celery
    stop_list: bool
    flash: bool
    client_id: str
    now: dt.datetime

    @property
    def queue(self) -> str:
        return QUEUE_FOR_KIND[self.kind]

    def first_status(self, *, suppressed: bool) -> MessageStatus:
        if suppressed:
            return S.SUPPRESSED
        return S.SCHEDULED if self.scheduled else S.QUEUED

    def row(
        self, number: str, *, suppressed: bool, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """The ``messages`` values of this request for ``number``, at its first status."""
        destination = self.routing.destination(number)
        return {
            "id": new_id(),
            "to": number,
            "text": self.sms.text,
            "sender": self.sender,
            "kind": self.kind.value,
            "provider": destination.provider,
            "route": destination.route,
            "status": self.first_status(suppressed=suppressed).value,
            "encoding": self.sms.encoding.value,
            "segments": self.sms.segments,
            "stop_list": self.stop_list,
            "flash": self.flash,
            "callback_url": self.callback_url,
            "client_id": self.client_id,
            "idempotency_key": idempotency_key,
            "send_at": self.send_at,
            "was_scheduled": self.scheduled,
            "expires_at": self.expires_at,
            "created_at": self.now,
            "updated_at": self.now,
        }

    def receipt(self, row: dict[str, Any]) -> MessageReceipt:
        return MessageReceipt(row["id"], row["status"], self.sms.encoding.value, self.sms.segments)


def insert_rows(session: Session, rows: list[dict[str, Any]], now: dt.datetime) -> None:
    """Insert rows made by :meth:`MessageSpec.row`, with their first events; caller commits."""
    insert_new_messages(
        session,
        rows,
        source=EventSource.PRODUCER,
        now=now,
        details={S.SUPPRESSED: SUPPRESSED_DETAIL},
    )


def check_message(
    settings: Settings,
    *,
    now: dt.datetime,
    text: str,
    kind: str,
    send_at: str | dt.datetime | None,
    provider: str | None,
    validity: int | None,
    sender: str | None,
    callback_url: str | None,
    stop_list: bool,
    flash: bool,
    client_id: str,
    idempotency_key: str | None,
) -> MessageSpec:
    """Every check of a message request but its number; raises InvalidField."""
    message_kind = check_kind(kind)
    sms = check_text(text, max_parts=settings.max_parts)
    when = parse_send_at(send_at, now=now, tz=settings.timezone)
    seconds = resolve_validity(validity, message_kind, settings)
    checked_sender = check_sender(sender)
    routing = resolve_routing(provider, message_kind, settings, flash=flash, sender=checked_sender)
    checked_url = check_callback_url(callback_url, settings, signed_by_key=bool(client_id))
    check_idempotency(client_id, idempotency_key)
    if flash and sms.segments > 1:
        raise InvalidField("flash", "a flash SMS must fit in one part")
    return MessageSpec(
        kind=message_kind,
        sms=sms,
        send_at=when,
        routing=routing,
        sender=checked_sender,
        callback_url=checked_url,
        expires_at=(when or now) + dt.timedelta(seconds=seconds),
        scheduled=when is not None and (when - now).total_seconds() > settings.schedule_horizon,
        stop_list=stop_list,
        flash=flash,
        client_id=client_id,
        now=now,
    )
