"""Request and response bodies of the ``/v1`` API, with examples for ``/docs``.

Requests forbid unknown fields, so a typo (``sendAt``) is a 422 naming it
instead of a silently immediate send. Fields whose checks belong to the
producer (numbers, texts, times, providers) are only typed here: the
producer's :class:`~producer.errors.InvalidField` gives the reason, and a
caller of the Python API gets the same one. Values that may be one of
several shapes (``to``: a number or a list; ``recipients``: numbers or rows)
are typed ``Any`` with an explicit JSON schema, so a wrong item is reported by
its position (``to[3]``, row 4) rather than as pydantic's union noise.

No response carries a message text: it may be a one-time code.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, WithJsonSchema

E164_EXAMPLE = "+491701234567"
SEND_AT_DOC = (
    "when to send: ISO 8601 with a zone (2026-02-01T23:30:00+01:00) or "
    "'YYYY-MM-DD HH:MM' in SMSQ_TIMEZONE; omitted: now"
)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- messages ----------------------------------------------------------------

Recipients = Annotated[
    Any,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "example": E164_EXAMPLE},
                {"type": "array", "items": {"type": "string"}, "maxItems": 1000},
            ],
            "description": "a phone number with its country code, or a list of them "
            "(at most SMSQ_MAX_RECIPIENTS)",
        }
    ),
]


class SendMessage(_Request):
    """``POST /v1/messages``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"to": E164_EXAMPLE, "text": "Your code is 123456", "kind": "otp"},
                {
                    "to": [E164_EXAMPLE, "+4915112345678"],
                    "text": "Your parcel arrives today",
                    "send_at": "2026-02-01T09:00:00+01:00",
                    "callback_url": "https://example.com/smsq/status",
                },
            ]
        },
    )

    to: Recipients
    text: str = Field(description="GSM-7 or Unicode; at most SMSQ_MAX_PARTS parts")
    kind: Literal["otp", "transactional"] = Field(
        default="transactional", description="otp goes on its own queue, first"
    )
    sender: str | None = Field(default=None, description="sender name; default: the account's")
    send_at: str | None = Field(default=None, description=SEND_AT_DOC)
    provider: str | None = Field(
        default=None,
        description="a provider account (that account only) or a route by name; "
        "default: the first matching route, else SMSQ_DEFAULT_PROVIDER",
    )
    callback_url: str | None = Field(
        default=None, description="status webhooks go here; default: the API key's webhook URL"
    )
    validity: int | None = Field(
        default=None, description="seconds it may wait unsent; default 600 for otp, else 86400"
    )


class _FromView(BaseModel):
    """An answer read from the attributes of a view or receipt (``model_validate(view)``).

    The producer's records (``producer.receipts``, ``producer.campaign_views``)
    hold the data; these models only add the JSON schema and its examples.
    """

    model_config = ConfigDict(from_attributes=True)


class MessageAccepted(_FromView):
    """One accepted message (202); for a list ``to``, one per number, in order."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0194f3a2-7c1e-7d40-9c1b-3f6a2e1d9b10",
                    "status": "queued",
                    "encoding": "gsm7",
                    "segments": 1,
                }
            ]
        }
    )

    id: str
    status: str = Field(description="queued, scheduled or suppressed (on the stop list)")
    encoding: Literal["gsm7", "ucs2"]
    segments: int


class MessageEventOut(_FromView):
    status: str
    source: str = Field(description="producer, worker, dlr, sweeper or operator")
    applied: bool = Field(description="false: recorded but the status did not change")
    provider_code: int | None
    detail: str | None
    created_at: dt.datetime


class MessageOut(_FromView):
    """``GET /v1/messages/{id}``: everything but the text."""

    id: str
    to: str
    kind: str
    campaign_id: str | None
    status: str
    provider: str = Field(description="the provider account of its last attempt")
    route: str | None = Field(
        description="the route of the providers file it goes by; null: sent on provider only"
    )
    provider_message_id: str | None
    error_code: int | None
    error_detail: str | None
    attempts: int
    encoding: str
    segments: int
    send_at: dt.datetime | None
    expires_at: dt.datetime | None
    created_at: dt.datetime
    sent_at: dt.datetime | None
    finished_at: dt.datetime | None
    events: list[MessageEventOut]


# --- campaigns ---------------------------------------------------------------

CampaignRecipients = Annotated[
    list[Any],
    WithJsonSchema(
        {
            "type": "array",
            "items": {
                "anyOf": [
                    {"type": "string", "example": E164_EXAMPLE},
                    {"type": "object", "additionalProperties": True},
                ]
            },
            "description": "numbers, or objects with the number under phone_column "
            "and the template's fields",
        }
    ),
]


class CreateCampaign(_Request):
    """``POST /v1/campaigns`` as JSON (a CSV upload is the multipart form)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "spring sale",
                    "text": "Hi {name}, 20% off today",
                    "recipients": [
                        {"phone": E164_EXAMPLE, "name": "Ada"},
                        {"phone": "+4915112345678", "name": "Grace"},
                    ],
                    "send_at": "2026-04-01T10:00:00+02:00",
                }
            ]
        },
    )

    name: str
    text: str = Field(description="a template: {field} is filled from each recipient")
    recipients: CampaignRecipients
    send_at: str | None = Field(default=None, description=SEND_AT_DOC)
    provider: str | None = Field(
        default=None,
        description="a provider account or a route by name; default: each recipient's "
        "first matching route, else SMSQ_DEFAULT_PROVIDER",
    )
    sender: str | None = None
    phone_column: str = Field(default="phone", description="the number's key in a recipient object")


class RejectedRowOut(_FromView):
    row: int = Field(description="1-based position among the recipients (CSV: header not counted)")
    value: str
    reason: str


class CampaignAccepted(_FromView):
    """The outcome of ingesting a campaign (202)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0194f3a2-7c1e-7d40-9c1b-3f6a2e1d9b10",
                    "status": "running",
                    "accepted": 998,
                    "rejected": 2,
                    "suppressed": 1,
                    "errors": [
                        {"row": 17, "value": "+49 170", "reason": "not a valid number"},
                        {"row": 40, "value": E164_EXAMPLE, "reason": "duplicate of row 3"},
                    ],
                }
            ]
        }
    )

    id: str = Field(validation_alias=AliasChoices("id", "campaign_id"))
    status: str
    accepted: int = Field(description="rows that became messages (suppressed ones included)")
    rejected: int
    suppressed: int = Field(description="accepted numbers on the stop list: never sent")
    errors: list[RejectedRowOut] = Field(description="the first 100 rejected rows")


class CampaignListItem(_FromView):
    """One campaign of ``GET /v1/campaigns``."""

    id: str
    name: str
    status: str
    provider: str
    created_at: dt.datetime
    accepted: int
    rejected: int


class CampaignOut(_FromView):
    """``GET /v1/campaigns/{id}``: progress, pace and estimated finish."""

    id: str
    name: str
    status: str
    provider: str
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    send_at: dt.datetime | None
    accepted: int
    rejected: int
    counts: dict[str, int] = Field(description="messages per status")
    to_send: int = Field(description="messages not yet handed to the provider")
    sent_last_minute: int
    rate_per_second: float = Field(description="sent in the last 60 s, per second")
    estimated_finish: dt.datetime | None = Field(
        description="now + to_send / rate; null when not running, idle, or done"
    )


class CampaignControlled(BaseModel):
    """After pause, resume or cancel."""

    id: str
    status: str
    changed: bool = Field(description="false: it already had this status")
    cancelled_messages: int = Field(default=0, description="unsent messages cancelled")


# --- the stop list -------------------------------------------------------------


class AddToStoplist(_Request):
    """``POST /v1/stoplist``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"numbers": [E164_EXAMPLE], "reason": "replied STOP"}]},
    )

    numbers: Annotated[
        list[Any],
        WithJsonSchema({"type": "array", "items": {"type": "string", "example": E164_EXAMPLE}}),
    ]
    reason: str = Field(default="", description="kept with each new entry (at most 200 characters)")


class StoplistChanged(BaseModel):
    """What an add or import did."""

    added: int
    already: int = Field(description="already listed (or twice in the input)")
    rejected: int = Field(description="values that are not phone numbers")
    errors: list[RejectedRowOut] = Field(description="the first 100 rejected values")


class StoplistEntry(BaseModel):
    number: str
    reason: str
    created_at: dt.datetime


class StoplistPage(BaseModel):
    """Entries in number order; pass ``next`` as ``after`` for the next page."""

    items: list[StoplistEntry]
    next: str | None = Field(
        description="the `after` of the next page; null once a page comes back short"
    )


# --- errors (for the docs; producer.http.errors makes them) ------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable: invalid_field, not_found, ...")
    message: str
    field: str | None = Field(description="the input at fault (to, to[3], file), or null")


class ErrorOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "invalid_field",
                        "message": "not a valid number for its country (Germany: too short)",
                        "field": "to[3]",
                    }
                }
            ]
        }
    )

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: these statuses answer an :class:`ErrorOut`."""
    described = {
        401: "no API key, or an unknown one",
        403: "the API key was revoked",
        404: "no such resource (or not yours)",
        409: "not allowed in the current state",
        413: "the body or upload is too large",
        415: "unsupported content type",
        422: "an input is not valid; `field` names it",
        429: "over the API key's rate limit; see Retry-After",
    }
    return {
        status: {"model": ErrorOut, "description": described.get(status, "error")}
        for status in (401, 403, 429, *statuses)
    }
