"""The Python API web apps call: ``from producer.api import send``.

Every call validates first (an :class:`~producer.errors.InvalidField` names
the field; nothing is written), then commits the message row *with* its first
status event, and only then enqueues. The row is the source of truth: if the
broker is down the call still succeeds (the row is ``queued``, the failure is
logged, the worker's sweeper enqueues it later), and a worker never receives
an id it cannot find.

Scheduling: a ``send_at`` further than ``SMSQ_SCHEDULE_HORIZON`` away is
stored as ``scheduled`` and handed to Celery by the worker's promoter shortly
before; a nearer one is enqueued now with a Celery ETA. Validity (how long an
unsent message may wait before it expires) counts from ``send_at`` when there
is one.

The module-level :func:`send` and :func:`submit_campaign` use a default
:class:`Producer` built from the settings on first use (engine and Celery
client are made lazily, once per process); :func:`set_default_producer`
replaces it (tests, or an app with its own engine).
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import ParamSpec, TypeVar

import structlog
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from models.db import UNAVAILABLE_ERRORS, make_engine, make_sessionmaker
from models.ids import new_id
from models.status import MessageKind
from models.tables import utcnow
from producer import campaign_control, single_messages
from producer.campaign_control import ControlResult
from producer.campaign_ingestion import CampaignPlan, Ingestion, Recipient
from producer.campaign_templates import parse_template
from producer.errors import InvalidField, Unavailable
from producer.message_spec import MessageSpec, check_message
from producer.receipts import CampaignReceipt, MessageReceipt
from producer.routing import resolve_routing
from producer.single_messages import CheckedSend
from producer.validation import (
    check_one_line,
    check_sender,
    normalize_number,
    parse_send_at,
    resolve_provider,
    resolve_validity,
)
from smsq.core.names import QUEUE_FOR_KIND
from smsq.core.publisher import Publisher, TaskPublisher
from smsq.core.settings import Settings, get_settings

log = structlog.get_logger("smsq.producer")

CAMPAIGN_NAME_MAX = 200  # campaigns.name

P = ParamSpec("P")
R = TypeVar("R")


def database_errors(method: Callable[P, R]) -> Callable[P, R]:
    """The database being away surfaces as :class:`~producer.errors.Unavailable`."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except UNAVAILABLE_ERRORS as exc:
            log.warning("database unavailable", call=method.__name__, error=type(exc).__name__)
            raise Unavailable("database") from exc

    return call


class Producer:
    """Validates, writes and enqueues; one per process is plenty (thread-safe)."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        enqueuer: Publisher,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.enqueuer = enqueuer
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Producer:
        """A producer on the configured database and broker."""
        settings = settings or get_settings()
        engine = make_engine(settings.database_url)
        return cls(
            settings,
            make_sessionmaker(engine),
            TaskPublisher.for_broker(settings.effective_broker_url),
        )

    # --- campaign control (see producer.campaign_control) -------------------

    @database_errors
    def pause_campaign(self, campaign_id: str) -> ControlResult:
        with self.sessions() as session:
            return campaign_control.pause(session, campaign_id)

    @database_errors
    def resume_campaign(self, campaign_id: str) -> ControlResult:
        with self.sessions() as session:
            return campaign_control.resume(session, campaign_id, self.enqueuer)

    @database_errors
    def cancel_campaign(self, campaign_id: str) -> ControlResult:
        with self.sessions() as session:
            return campaign_control.cancel(session, campaign_id, now=self.clock())

    def close(self) -> None:
        """Release the database and broker connections (shutdown, tests)."""
        bind = self.sessions.kw.get("bind")
        if isinstance(bind, Engine):
            bind.dispose()
        close = getattr(self.enqueuer, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- one message ---------------------------------------------------------

    def send(
        self,
        to: str,
        text: str,
        *,
        sender: str | None = None,
        kind: str = MessageKind.TRANSACTIONAL,
        send_at: str | dt.datetime | None = None,
        provider: str | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        validity: int | None = None,
        stop_list: bool = True,
        client_id: str = "",
        flash: bool = False,
    ) -> MessageReceipt:
        """Accept one OTP or transactional SMS; see the module docstring.

        Raises :class:`~producer.errors.InvalidField` for bad input and
        :class:`~producer.errors.Unavailable` (within seconds) when the
        database is away.

        ``stop_list=False`` skips the stop list (an OTP the user just asked
        for). With an ``idempotency_key`` a repeated call by the same
        ``client_id`` returns the first call's message, whatever it carried.
        ``flash`` asks for a flash SMS (shown, not stored; one part only).
        """
        number = normalize_number(to, field="to")
        spec = check_message(
            self.settings,
            now=self.clock(),
            text=text,
            kind=kind,
            send_at=send_at,
            provider=provider,
            validity=validity,
            sender=sender,
            callback_url=callback_url,
            stop_list=stop_list,
            flash=flash,
            client_id=client_id,
            idempotency_key=idempotency_key,
        )
        return self.send_checked(number, spec, idempotency_key)

    @database_errors
    def send_checked(
        self, number: str, spec: MessageSpec, idempotency_key: str | None = None
    ) -> MessageReceipt:
        """Store and enqueue one message whose number and fields are checked
        (``normalize_number`` and :func:`~producer.message_spec.check_message`),
        on the one path of every single message (:mod:`producer.single_messages`)."""
        return single_messages.send_one(self, CheckedSend(number, spec, idempotency_key))

    # --- a campaign ----------------------------------------------------------

    @database_errors
    def submit_campaign(
        self,
        name: str,
        recipients: Iterable[Recipient],
        text: str,
        *,
        send_at: str | dt.datetime | None = None,
        provider: str | None = None,
        sender: str | None = None,
        phone_field: str = "phone",
        validity: int | None = None,
    ) -> CampaignReceipt:
        """Ingest a campaign: ``recipients`` are numbers, or rows of fields.

        ``text`` is a template (``"Hi {name}"``) filled from each row; a row
        of fields carries its number in ``phone_field``. A
        :class:`producer.csv_rows.BadRow` (a CSV row that could not be read)
        counts as a rejected row with its reason. The recipients are
        streamed (read once, in chunks; sending starts before the end). Row
        numbers in the receipt are 1-based positions in ``recipients``.

        Statuses: ``running`` when sending now or within the scheduling
        horizon; ``scheduled`` (with its messages ``scheduled``, no send
        tasks: the worker's promoter starts it) when ``send_at`` is further;
        ``finished`` at once when there is nothing to send (every row
        rejected or stop-listed). Details in :mod:`producer.campaign_ingestion`.
        """
        settings = self.settings
        now = self.clock()
        if not isinstance(name, str) or not name.strip():
            raise InvalidField("name", "must be a non-empty string")
        if len(name) > CAMPAIGN_NAME_MAX:
            raise InvalidField("name", f"at most {CAMPAIGN_NAME_MAX} characters, got {len(name)}")
        check_one_line("name", name)
        if isinstance(recipients, (str, bytes, Mapping)):
            raise InvalidField("recipients", "must be an iterable of numbers or of rows")
        if not isinstance(phone_field, str) or not phone_field:
            raise InvalidField("phone_field", "must be a non-empty string")
        template = parse_template(text, max_parts=settings.max_parts)
        when = parse_send_at(send_at, now=now, tz=settings.timezone)
        account = resolve_provider(provider, settings)
        sender = check_sender(sender)
        routing = resolve_routing(
            provider, MessageKind.CAMPAIGN, settings, sender=sender, every_number=True
        )
        seconds = resolve_validity(validity, MessageKind.CAMPAIGN, settings)
        plan = CampaignPlan(
            campaign_id=new_id(),
            name=name,
            template=template,
            provider=account,
            routing=routing,
            sender=sender,
            send_at=when,
            scheduled=when is not None and (when - now).total_seconds() > settings.schedule_horizon,
            expires_at=(when or now) + dt.timedelta(seconds=seconds),
            now=now,
            max_parts=settings.max_parts,
            batch_size=settings.batch_size,
            phone_field=phone_field,
            queue=QUEUE_FOR_KIND[MessageKind.CAMPAIGN],
        )

        def enqueue(ids: list[str], eta: dt.datetime | None) -> bool:
            return self.enqueue(ids, queue=plan.queue, eta=eta)

        with self.sessions() as session:
            receipt = Ingestion(session, plan, enqueue).run(recipients)
        log.info(
            "campaign submitted",
            campaign_id=receipt.campaign_id,
            status=receipt.status,
            accepted=receipt.accepted,
            rejected=receipt.rejected,
            suppressed=receipt.suppressed,
        )
        return receipt

    # --- the broker ----------------------------------------------------------

    def enqueue(self, ids: list[str], *, queue: str, eta: dt.datetime | None = None) -> bool:
        """Publish committed ids; never raises (the sweeper covers a failure)."""
        try:
            if self.enqueuer.send_messages(ids, queue=queue, eta=eta):
                return True
        except Exception as exc:
            # A publisher should not raise (TaskPublisher.for_broker does not), but the
            # rows are committed either way: log, and let the sweeper send them.
            log.error(
                "enqueue raised; the sweeper will re-enqueue",
                queue=queue,
                messages=len(ids),
                error=f"{type(exc).__name__}: {exc}",
            )
        return False


# --- the process-wide default ------------------------------------------------

_default: Producer | None = None
_default_lock = threading.Lock()


def default_producer() -> Producer:
    """The producer the module-level functions use, built on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Producer.from_settings()
    return _default


def set_default_producer(producer: Producer | None) -> None:
    """Replace the default producer; None builds a fresh one on next use."""
    global _default
    with _default_lock:
        _default = producer


def send(
    to: str,
    text: str,
    *,
    sender: str | None = None,
    kind: str = MessageKind.TRANSACTIONAL,
    send_at: str | dt.datetime | None = None,
    provider: str | None = None,
    callback_url: str | None = None,
    idempotency_key: str | None = None,
    validity: int | None = None,
    stop_list: bool = True,
    client_id: str = "",
    flash: bool = False,
) -> MessageReceipt:
    """:meth:`Producer.send` on the default producer."""
    return default_producer().send(
        to,
        text,
        sender=sender,
        kind=kind,
        send_at=send_at,
        provider=provider,
        callback_url=callback_url,
        idempotency_key=idempotency_key,
        validity=validity,
        stop_list=stop_list,
        client_id=client_id,
        flash=flash,
    )


def submit_campaign(
    name: str,
    recipients: Iterable[Recipient],
    text: str,
    *,
    send_at: str | dt.datetime | None = None,
    provider: str | None = None,
    sender: str | None = None,
    phone_field: str = "phone",
    validity: int | None = None,
) -> CampaignReceipt:
    """:meth:`Producer.submit_campaign` on the default producer."""
    return default_producer().submit_campaign(
        name,
        recipients,
        text,
        send_at=send_at,
        provider=provider,
        sender=sender,
        phone_field=phone_field,
        validity=validity,
    )
