"""A drop-in for the panelsms ``sendMtSms.php`` API, queueing through smsq.

A web app written against panelsms changes only its base URL and gains
queueing, throttling, retries and reports. ``GET`` (query string) and
``POST`` (a form or a JSON object; the body wins over the query, as PHP's
``$_REQUEST``) with the vendor's parameter names (``user``, ``apiKey``,
``to``, ``message``, ``senderId``, ``transactionId``, ``confirmation``,
``dcs``, ``udh``, ``validityPeriod``, ``scheduledDeliveryTime``,
``responseType``, ``callbackUrl``). The answer is the vendor's, always HTTP
200: plain ``OK_<id>`` / ``ERROR_<code>``, or the JSON/XML shapes for
``responseType=json|xml``, rendered by :mod:`providers.panelsms.protocol`,
the same code as the simulator's, so the two cannot drift. ``<id>`` is smsq's message id.

Decisions where the vendor text leaves room:

- **Credentials**: ``apiKey`` is an smsq API key (``smsq keys create``) and
  ``user`` is that key's name (or its id). Unknown/malformed ``apiKey`` is
  ``ERROR_2``; a revoked key, or a ``user`` that is not the key's, is
  ``ERROR_1`` (account disabled or unknown). Over the key's rate limit:
  ``ERROR_7`` with ``Retry-After``.
- **One recipient per request**, as the vendor documents ("send a single SMS
  message to a destination number"): a list in ``to`` is ``ERROR_5``.
- ``transactionId`` becomes the message's idempotency key (per API key): a
  repeated request with it returns the first message's id and sends nothing
  new. This is the drop-in's only idempotency (the ``Idempotency-Key``
  header is for ``/v1/``).
- ``scheduledDeliveryTime`` and ``validityPeriod``: relative seconds, or an
  ISO date-time (``2024-02-10 14:30:00`` too); without an offset it is read in
  ``SMSQ_TIMEZONE``. An absolute validity counts from the send time.
- ``udh=0100`` (the vendor's flash header) sends a flash SMS; other headers
  (pre-split concatenated parts: smsq splits long texts itself) are
  ``ERROR_15``. ``dcs`` is checked (``ERROR_14``) but smsq picks the encoding
  from the text; binary SMS (``dcs`` 2 or 4) is ``ERROR_15``.
- ``confirmation`` is checked; smsq records every delivery report anyway.
  ``callbackUrl`` becomes the message's ``callback_url``: it receives smsq's
  signed status webhooks (``docs``), not the vendor's report body.
- A stop-listed number is ``ERROR_11`` (destination barred); the JSON/XML
  answer still carries the id of the recorded ``suppressed`` message.
- The database not answering is ``ERROR_6`` (queue full: retry after a short
  delay), which a panelsms client already retries; a retry with the same
  ``transactionId`` is safe.

The producer's :class:`~producer.errors.InvalidField` maps by field:

=====================  =====  ==========================================
field                  code   vendor meaning
=====================  =====  ==========================================
``to``                 5      invalid destination address
``text`` (empty, bad)  8      invalid message data
``text`` (too long)    13     message too long
``flash`` (> 1 part)   13     message too long
``sender``             4      invalid source address
``send_at``            12     invalid scheduled time
``validity``           8      invalid message data
``callback_url``       8      invalid message data
``idempotency_key``    8      invalid message data (``transactionId``)
anything else          8      invalid message data
=====================  =====  ==========================================

The ``apiKey`` is never logged (``producer.http.redact`` masks it in access
logs); nor is the message text.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import anyio
import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from sqlalchemy.exc import SQLAlchemyError

from models.sms_text import TextTooLong
from models.status import MessageStatus
from producer.api import database_errors
from producer.errors import InvalidField, Unavailable
from producer.http.auth import ApiClient, authenticate_key, check_rate
from producer.http.deps import app_producer
from producer.http.errors import ApiError
from providers.codes import Code, Rejection
from providers.panelsms.protocol import (
    BINARY_DCS,
    DCS_VALUES,
    FLASH_UDH,
    HEX_UDH_RE,
    PATH,
    Param,
    read_boolean,
    read_time,
    render_answer,
    response_type,
)
from providers.wire import WireAnswer, request_params

router = APIRouter(tags=["panelsms drop-in"])
log = structlog.get_logger("smsq.dropin")

# dcs as the drop-in reads it: exactly one of the vendor's values, as written.
_DCS_TEXTS = frozenset(str(value) for value in DCS_VALUES)
_BINARY_DCS_TEXTS = frozenset(str(value) for value in BINARY_DCS)

CODE_FOR_FIELD: dict[str, Code] = {
    "to": Code.INVALID_DESTINATION,
    "text": Code.INVALID_MESSAGE_DATA,
    "sender": Code.INVALID_SOURCE,
    "send_at": Code.INVALID_SCHEDULED_TIME,
    "flash": Code.MESSAGE_TOO_LONG,
}


class Refusal(Exception):
    """A request answered with a vendor error ``code`` (``detail`` is for the log)."""

    def __init__(
        self,
        code: int,
        detail: str,
        *,
        transaction_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail
        self.transaction_id = transaction_id
        self.headers = headers


@router.get(PATH, operation_id="send_mt_sms_get", summary="panelsms drop-in (GET)")
@router.post(PATH, operation_id="send_mt_sms_post", summary="panelsms drop-in (POST)")
async def send_mt_sms(request: Request) -> Response:
    body = await request.body() if request.method == "POST" else b""
    query = list(request.query_params.multi_items())
    try:
        params = request_params(query, request.headers.get("content-type"), body)
    except Rejection as exc:
        params = dict(request.query_params)
        return _to_response(render_answer(response_type(params), code=exc.code))
    rtype = response_type(params)
    try:
        message_id = await anyio.to_thread.run_sync(_send, request.app, params)
    except Unavailable as exc:
        # The vendor's "queue full, retry" is what a panelsms client already
        # handles; the key lookup and the send both need the database.
        headers = {"Retry-After": str(exc.retry_after)}
        return _to_response(render_answer(rtype, code=Code.QUEUE_FULL, headers=headers))
    except Refusal as refusal:
        log.info("dropin.refused", code=refusal.code, detail=refusal.detail)
        return _to_response(
            render_answer(
                rtype,
                code=refusal.code,
                transaction_id=refusal.transaction_id,
                headers=refusal.headers,
            )
        )
    return _to_response(render_answer(rtype, transaction_id=message_id))


@database_errors
def _send(app: FastAPI, params: dict[str, str]) -> str:
    """Authenticate, map the vendor parameters, send; the message id or Refusal."""
    client = _client(app, params.get(Param.USER, ""), params.get(Param.API_KEY, ""))
    producer = app_producer(app)
    settings = producer.settings
    now = producer.clock()
    tz = ZoneInfo(settings.timezone)
    dcs = params.get(Param.DCS, "")
    if dcs and dcs not in _DCS_TEXTS:
        raise Refusal(Code.INVALID_DCS, "dcs must be one of 0, 1, 2, 3, 4, 8")
    if dcs in _BINARY_DCS_TEXTS:
        raise Refusal(Code.NOT_SUPPORTED, "binary SMS is not supported")
    flash = _flash(params.get(Param.UDH, ""))
    if read_boolean(params.get(Param.CONFIRMATION, "false")) is None:
        raise Refusal(Code.INVALID_MESSAGE_DATA, "confirmation must be true or false")
    try:
        send_at = _parse_time(params.get(Param.SCHEDULED_DELIVERY_TIME, ""), now, tz)
    except ValueError:
        raise Refusal(Code.INVALID_SCHEDULED_TIME, "scheduledDeliveryTime is unreadable") from None
    validity = _validity(params.get(Param.VALIDITY_PERIOD, ""), send_at or now, now, tz)
    to = params.get(Param.TO, "")
    if "," in to or ";" in to:
        raise Refusal(Code.INVALID_DESTINATION, "one recipient per request")
    try:
        receipt = producer.send(
            to,
            params.get(Param.MESSAGE, ""),
            sender=params.get(Param.SENDER_ID) or None,
            send_at=send_at,
            callback_url=params.get(Param.CALLBACK_URL) or None,
            idempotency_key=params.get(Param.TRANSACTION_ID) or None,
            validity=validity,
            client_id=client.id,
            flash=flash,
        )
    except InvalidField as exc:
        raise Refusal(_code_for(exc), f"{exc.field}: {exc.reason}") from None
    except SQLAlchemyError as exc:
        log.error("dropin.database_error", error=type(exc).__name__)
        raise Refusal(Code.QUEUE_FULL, "the database did not answer; retry") from None
    if receipt.status == MessageStatus.SUPPRESSED:
        raise Refusal(Code.DESTINATION_BARRED, "on the stop list", transaction_id=receipt.id)
    log.info("dropin.accepted", message_id=receipt.id, status=receipt.status, client=client.id)
    return receipt.id


def _client(app: FastAPI, user: str, key: str) -> ApiClient:
    if not key:
        raise Refusal(Code.INVALID_API_KEY, "apiKey is missing")
    try:
        client = authenticate_key(app, key)
    except ApiError as exc:
        if exc.status == 403:
            raise Refusal(Code.ACCOUNT_DISABLED, "the API key was revoked") from None
        raise Refusal(Code.INVALID_API_KEY, "unknown apiKey") from None
    if not user or user not in (client.name, client.id):
        raise Refusal(Code.ACCOUNT_DISABLED, "user is not the API key's name")
    try:
        check_rate(app, client)
    except ApiError as exc:
        raise Refusal(Code.THROTTLED, exc.message, headers=exc.headers) from None
    return client


def _code_for(exc: InvalidField) -> int:
    if exc.field == "text" and isinstance(exc.__cause__, TextTooLong):
        return Code.MESSAGE_TOO_LONG
    return CODE_FOR_FIELD.get(exc.field, Code.INVALID_MESSAGE_DATA)


def _flash(udh: str) -> bool:
    if not udh:
        return False
    if not HEX_UDH_RE.fullmatch(udh):
        raise Refusal(Code.INVALID_UDH, "udh must be an even-length hex string")
    if udh == FLASH_UDH:
        return True
    raise Refusal(Code.NOT_SUPPORTED, "only the flash UDH 0100 is supported")


def _parse_time(value: str, now: dt.datetime, tz: ZoneInfo) -> dt.datetime | None:
    """Relative seconds or an ISO date-time; None when empty, ValueError if unreadable."""
    if not value.strip():
        return None
    when = read_time(value, tz)
    if isinstance(when, int):
        try:
            return now + dt.timedelta(seconds=when)
        except OverflowError:  # beyond any date: unreadable, not a server error
            raise ValueError(f"{when} seconds from now is not a date") from None
    return when.astimezone(dt.UTC)


def _validity(value: str, start: dt.datetime, now: dt.datetime, tz: ZoneInfo) -> int | None:
    """Seconds of validity from a relative or absolute ``validityPeriod``."""
    if not value.strip():
        return None
    try:
        when = read_time(value, tz)
    except ValueError:
        raise Refusal(Code.INVALID_MESSAGE_DATA, "validityPeriod is unreadable") from None
    if isinstance(when, int):
        seconds = when
    else:
        seconds = int((when.astimezone(dt.UTC) - start).total_seconds())
    if seconds <= 0:
        raise Refusal(Code.INVALID_MESSAGE_DATA, "validityPeriod has already passed")
    return seconds


def _to_response(answer: WireAnswer) -> Response:
    return Response(content=answer.body, status_code=answer.status, headers=answer.headers)
