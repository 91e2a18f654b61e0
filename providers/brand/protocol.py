"""The brand protocol: the vendor's wire facts, once.

The vendor documents the parameters and the callback; the answers, their HTTP
statuses and the per-request limit are the decisions of ``shared/providers``.
The adapter builds requests and reads answers with this module, the simulator
reads requests and renders answers with it. Nothing here does I/O: answers
are plain :class:`~providers.wire.WireAnswer` values.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

from providers.codes import describe
from providers.wire import WireAnswer, json_answer


class Param:
    """The request parameter names."""

    KEY: Final = "key"
    BRAND_ID: Final = "brandID"
    NUMBERS: Final = "numbers"  # comma-separated
    TEXT: Final = "text"
    STOP_LIST: Final = "stopList"  # "false" skips the provider's stop list
    OTP: Final = "otp"  # "true": OTP traffic, highest priority
    SEND_TIME: Final = "sendTime"


SECRET_PARAMS: Final = frozenset({Param.KEY})
NUMBER_SEPARATOR: Final = ","
# International digits without '+' or '00': a country code never starts with 0.
NUMBER_RE: Final = re.compile(r"[1-9][0-9]{7,14}")

TRUE: Final = "true"
FALSE: Final = "false"
BOOLEANS: Final = {TRUE: True, FALSE: False}

SEND_TIME_FORMAT: Final = "%Y-%m-%d %H:%M"  # the vendor's Y-m-d H:i


def brand_number(e164: str) -> str:
    """``+4917...`` -> ``4917...`` (the vendor wants no ``+`` and no ``00``)."""
    return e164.removeprefix("+")


def join_numbers(numbers: Sequence[str]) -> str:
    return NUMBER_SEPARATOR.join(numbers)


def split_numbers(value: str) -> list[str]:
    """The numbers of a ``numbers`` value, blanks around them ignored."""
    return [n.strip() for n in value.split(NUMBER_SEPARATOR)] if value.strip() else []


def read_boolean(value: str) -> bool | None:
    """``true`` or ``false`` (any case), else None."""
    return BOOLEANS.get(value.strip().lower())


def format_send_time(when: dt.datetime) -> str:
    """``sendTime`` as smsq sends it: in UTC."""
    return when.astimezone(dt.UTC).strftime(SEND_TIME_FORMAT)


def read_send_time(value: str, tz: dt.tzinfo) -> dt.datetime | None:
    """A ``sendTime`` read in the provider's zone ``tz``; None if unreadable."""
    try:
        when = dt.datetime.strptime(value.strip(), SEND_TIME_FORMAT)
    except ValueError:
        return None
    return when.replace(tzinfo=tz)


# --- answers: JSON, with the HTTP status of the error code -----------------

STATUS: Final = "status"
OK: Final = "OK"
ERROR: Final = "ERROR"
MESSAGES: Final = "messages"
NUMBER: Final = "number"
SMS_ID: Final = "smsID"
CODE: Final = "code"
MESSAGE: Final = "message"

HTTP_STATUS_FOR_CODE: Final = {1: 401, 2: 401, 6: 503, 7: 429}
HTTP_STATUS_DEFAULT: Final = 400
HTTP_UNAUTHORIZED: Final = 401  # codes 1 and 2: key or brandID refused


def http_status(code: int) -> int:
    """The HTTP status of an error answer with ``code``."""
    return HTTP_STATUS_FOR_CODE.get(code, HTTP_STATUS_DEFAULT)


def render_accepted(sms_ids: Mapping[str, str] | Sequence[tuple[str, str]]) -> WireAnswer:
    """HTTP 200 with one ``{"number", "smsID"}`` per number, in request order."""
    pairs = sms_ids.items() if isinstance(sms_ids, Mapping) else sms_ids
    messages = [{NUMBER: number, SMS_ID: sms_id} for number, sms_id in pairs]
    return json_answer(200, {STATUS: OK, MESSAGES: messages})


def render_error(
    code: int, detail: str | None = None, headers: Mapping[str, str] | None = None
) -> WireAnswer:
    """``{"status": "ERROR", "code", "message"}`` with the decided HTTP status."""
    message = f"{describe(code)}: {detail}" if detail else describe(code)
    return json_answer(http_status(code), {STATUS: ERROR, CODE: code, MESSAGE: message}, headers)


def read_json_object(content: bytes) -> dict[str, Any] | None:
    """The answer's JSON object, or None when it has none."""
    try:
        data = json.loads(content)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    code: int
    message: str | None


def read_error(data: Mapping[str, Any]) -> ErrorAnswer | None:
    """The error an answer states, None if it states none; ValueError for a non-numeric code."""
    if data.get(STATUS) != ERROR or CODE not in data:
        return None
    try:
        code = int(data[CODE])
    except (TypeError, ValueError):
        raise ValueError("brand error without a numeric code") from None
    message = data.get(MESSAGE)
    return ErrorAnswer(code, str(message) if message else None)


def is_ok(data: Mapping[str, Any] | None) -> bool:
    return data is not None and data.get(STATUS) == OK


def read_sms_ids(data: Mapping[str, Any], numbers: Sequence[str]) -> list[str]:
    """The ``smsID`` of each number, in order; ValueError naming the mismatch."""
    messages = data.get(MESSAGES)
    if not isinstance(messages, list) or len(messages) != len(numbers):
        raise ValueError(f"brand answer should list {len(numbers)} messages")
    ids: list[str] = []
    for entry, number in zip(messages, numbers, strict=True):
        if not isinstance(entry, dict) or str(entry.get(NUMBER)) != number or not entry.get(SMS_ID):
            raise ValueError(f"brand answer does not match number {number}")
        ids.append(str(entry[SMS_ID]))
    return ids


# --- delivery callbacks: GET with these query parameters ---------------------


class CallbackField:
    KEY: Final = "key"  # the callback key, checked by the receiver
    SMS_ID: Final = "smsID"
    NUMBER: Final = "number"
    STATUS_ID: Final = "statusID"
    DATE: Final = "date"


class StatusId(IntEnum):
    SENT = 0
    DELIVERED = 1
    FAILED = 2
    PENDING = 3
    ERROR = 4


CALLBACK_DATE_FORMAT: Final = "%Y-%m-%d %H:%M:%S"  # the vendor's Y-m-d H:i:s


def callback_params(
    key: str, sms_id: str, number: str, status_id: int, at: float, tz: dt.tzinfo
) -> dict[str, Any]:
    """The query of the vendor's GET delivery callback."""
    return {
        CallbackField.KEY: key,
        CallbackField.SMS_ID: sms_id,
        CallbackField.NUMBER: number,
        CallbackField.STATUS_ID: int(status_id),
        CallbackField.DATE: dt.datetime.fromtimestamp(at, tz).strftime(CALLBACK_DATE_FORMAT),
    }
