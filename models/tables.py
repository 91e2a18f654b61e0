"""The database tables (SQLAlchemy 2.0 typed ORM).

The same schema runs on SQLite (the embedded default, tests) and PostgreSQL
(production). Portable choices made for that:

- times are stored as naive UTC and come back timezone-aware (``UTCDateTime``),
  because SQLite keeps no zone;
- statuses are plain strings checked by the application (``models.status``),
  not database enums, so adding a status is not a migration on PostgreSQL;
- ``Message.client_id`` is ``''`` rather than NULL when there is no client,
  because a unique index treats NULLs as distinct on both databases, and the
  idempotency key must be unique per client.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from models.ids import new_id
from models.status import CampaignStatus, EventSource, MessageKind, MessageStatus


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware datetimes in, aware UTC datetimes out, naive UTC on disk."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; smsq stores aware datetimes only")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


# Named constraints so Alembic migrations are deterministic on both databases.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)  # a template: "Hi {name}"
    provider: Mapped[str] = mapped_column(String(64))
    sender: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=CampaignStatus.DRAFT)
    send_at: Mapped[dt.datetime | None]
    accepted: Mapped[int] = mapped_column(Integer, default=0)  # ingestion summary
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]

    messages: Mapped[list[Message]] = relationship(back_populates="campaign", lazy="raise")


# The predicate of the partial index ``ix_messages_unknown_unresent``, as SQL
# text: a query must say it in these literal words (not with bound
# parameters) for PostgreSQL's prepared, generic plans to use the index.
UNKNOWN_UNRESENT = "status = 'unknown' AND unknown_resends = 0"
# A campaign's rows still to send (its partial index; worker.campaign_progress).
CAMPAIGN_PENDING_STATUSES = ("accepted", "scheduled", "queued", "sending")
CAMPAIGN_PENDING = "status IN (" + ", ".join(f"'{s}'" for s in CAMPAIGN_PENDING_STATUSES) + ")"


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("client_id", "idempotency_key"),
        # A number appears once per campaign: duplicates in a CSV are sent once.
        UniqueConstraint("campaign_id", "to"),
        Index(None, "status", "provider"),
        Index(None, "provider_message_id"),
        Index(None, "status", "send_at"),
        # The last minutes' sends (fleet status, per provider and route): a
        # range of the newest entries, read from the index alone.
        Index(None, "sent_at", postgresql_include=["provider", "route"]),
        # Final rows by when they ended: failures of the last hour, retention.
        Index(None, "status", "finished_at"),
        # The sweeper's resend candidates: unknown and never resent (a few rows,
        # however many resent unknowns the table keeps for an operator).
        Index(
            "ix_messages_unknown_unresent",
            "provider",
            "updated_at",
            postgresql_where=text(UNKNOWN_UNRESENT),
            sqlite_where=text(UNKNOWN_UNRESENT),
        ),
        # Whether a campaign has anything left to send, after every batch:
        # answered from its pending rows, not by walking those already sent.
        Index(
            "ix_messages_campaign_pending",
            "campaign_id",
            postgresql_where=text(CAMPAIGN_PENDING),
            sqlite_where=text(CAMPAIGN_PENDING),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    to: Mapped[str] = mapped_column(String(16))  # E.164, with the '+'
    text: Mapped[str] = mapped_column(Text)
    sender: Mapped[str | None] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16), default=MessageKind.TRANSACTIONAL)
    # No index of its own: uq (campaign_id, to) serves campaign lookups, and
    # one index less is one less write per row of a million-row campaign.
    campaign_id: Mapped[str | None] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    # The account of its last attempt (or the one it was stored for), and the
    # route of the providers file it goes by; null: sent on ``provider`` only.
    provider: Mapped[str] = mapped_column(String(64))
    route: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=MessageStatus.ACCEPTED)
    encoding: Mapped[str] = mapped_column(String(8))  # gsm7 | ucs2
    segments: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider_message_id: Mapped[str | None] = mapped_column(String(64))
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_detail: Mapped[str | None] = mapped_column(Text)
    stop_list: Mapped[bool] = mapped_column(Boolean, default=True)
    flash: Mapped[bool] = mapped_column(Boolean, default=False)
    callback_url: Mapped[str | None] = mapped_column(Text)
    client_id: Mapped[str] = mapped_column(String(64), default="")
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    send_at: Mapped[dt.datetime | None]
    # The producer's decision when it stored the message: send_at lay beyond
    # SMSQ_SCHEDULE_HORIZON, so it waited as 'scheduled' for the promoter
    # (else it was enqueued, with an ETA when send_at was near). A campaign
    # message has no event of its first status; its history reads this
    # (producer.campaign_history) instead of re-deriving it from a horizon
    # that may have changed since.
    was_scheduled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    expires_at: Mapped[dt.datetime | None]
    lease_until: Mapped[dt.datetime | None]  # a row in 'sending' is owned until then
    lease_token: Mapped[str | None] = mapped_column(String(32))  # which claim owns it
    retry_at: Mapped[dt.datetime | None]  # a 'queued' retry waits until then (backoff)
    parts_sent: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0"
    )  # of a long text, accepted
    unknown_resends: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0"
    )  # at most one
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    sent_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]  # when it reached a final status

    campaign: Mapped[Campaign | None] = relationship(back_populates="messages", lazy="raise")
    events: Mapped[list[MessageEvent]] = relationship(
        back_populates="message", lazy="raise", order_by="MessageEvent.id"
    )


class MessageEvent(Base):
    """Append-only history: one row per status change or ignored late report."""

    __tablename__ = "message_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16), default=EventSource.WORKER)
    applied: Mapped[bool] = mapped_column(Boolean, default=True)  # False: kept, status unchanged
    provider_code: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    message: Mapped[Message] = relationship(back_populates="events", lazy="raise")


class Suppression(Base):
    """The stop list: numbers that get no campaign or marketing traffic."""

    __tablename__ = "suppressions"

    number: Mapped[str] = mapped_column(String(16), primary_key=True)
    reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class OrphanReport(Base):
    """A delivery report that matched no message yet.

    A brand report is matched by the provider's ``smsID``, which the worker
    writes only after the provider answered; a fast report can arrive first.
    It waits here and is applied when the worker stores the id (or by the
    sweeper), so no report is lost; the sweeper drops ones older than a day.
    """

    __tablename__ = "orphan_reports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    adapter: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[str | None] = mapped_column(String(64), index=True)
    provider_message_id: Mapped[str | None] = mapped_column(String(64), index=True)
    accounts: Mapped[str | None] = mapped_column(Text)  # comma-separated; NULL: any
    status: Mapped[str] = mapped_column(String(16))
    raw_status: Mapped[str] = mapped_column(String(64))
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_detail: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None]
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """A client of the HTTP API. The key itself is shown once and never stored.

    A key reads ``smsq_<prefix>_<secret>``: ``prefix`` finds the row, and the
    SHA-256 of the whole key is compared in constant time (the secret is 32
    random bytes, so a fast hash is enough; there is nothing to brute-force).
    ``webhook_secret`` signs this client's status webhooks; unlike the key it
    must be readable, because we sign with it.
    """

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))  # sha256 hex of the whole key
    rate_limit: Mapped[int | None] = mapped_column(Integer)  # requests/s; NULL: the default
    webhook_url: Mapped[str | None] = mapped_column(Text)  # default callback_url
    webhook_secret: Mapped[str] = mapped_column(String(64))  # whsec_<base64>
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None]


class IdempotencyRecord(Base):
    """The first answer to a POST carrying an ``Idempotency-Key``.

    Inserted before the request is handled (``status_code`` NULL), so a
    concurrent request with the same key finds it and waits for the answer
    instead of creating a second message.
    """

    __tablename__ = "idempotency_records"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))  # method, path and body
    status_code: Mapped[int | None] = mapped_column(Integer)  # NULL: still running
    body: Mapped[str | None] = mapped_column(Text)  # the answer, as sent
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


class WebhookDelivery(Base):
    """One status webhook to a customer's endpoint (an outbox row).

    Made from an applied ``message_events`` row of a message with a
    ``callback_url``; ``id`` is the ``webhook-id`` header, the same on every
    retry so the receiver can deduplicate; ``payload`` is the exact body
    that was signed.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index(None, "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_id: Mapped[int] = mapped_column(BigId, unique=True)
    message_id: Mapped[str] = mapped_column(String(36), index=True)
    client_id: Mapped[str] = mapped_column(String(64), default="")
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[dt.datetime | None]


class DisabledWebhookEndpoint(Base):
    """An endpoint that answered 410 Gone: nothing more is sent to it."""

    __tablename__ = "disabled_webhook_endpoints"

    url: Mapped[str] = mapped_column(String(2048), primary_key=True)
    reason: Mapped[str] = mapped_column(String(200), default="")
    disabled_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
