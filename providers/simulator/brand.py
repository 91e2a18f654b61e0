"""The brand API: one text to many ``numbers``, JSON answers, GET callbacks.

Pure functions over the request parameters, like :mod:`.panelsms`. The vendor
documents only the parameters and the callback; the answers, HTTP statuses and
the per-request limit are the decisions of ``shared/providers/README.md``.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from dataclasses import dataclass
from typing import Any

from models.sms_text import TextError, TextTooLong, analyze
from providers.codes import brand_http_status, describe
from providers.simulator.config import SimConfig
from providers.simulator.wire import Rejection, SimResponse, json_response

ROUTE = "/brand/send"
SEND_TIME_FORMAT = "%Y-%m-%d %H:%M"  # the vendor's Y-m-d H:i
CALLBACK_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"  # the vendor's Y-m-d H:i:s

# Callback statusID values (vendor table).
SENT, DELIVERED, FAILED = 0, 1, 2

# International digits without '+' or '00': a country code never starts with 0.
_NUMBER_RE = re.compile(r"[1-9][0-9]{7,14}")
_BOOLEANS = {"true": True, "false": False}


@dataclass(frozen=True, slots=True)
class BrandSubmit:
    numbers: list[str]
    text: str
    parts: int
    send_at: float | None
    otp: bool
    stop_list: bool


def authenticate(params: dict[str, str], config: SimConfig) -> None:
    """Code 2 for an unknown key, 1 for a brandID that is not the key's."""
    key = params.get("key", "")
    brand_id = config.brand_keys.get(key) if key else None
    if brand_id is None:
        raise Rejection(2, "unknown key")
    if not hmac.compare_digest(params.get("brandID", "").encode(), brand_id.encode()):
        raise Rejection(1, "brandID does not belong to this key")


def numbers_of(params: dict[str, str]) -> list[str]:
    """The comma-separated numbers, blanks around them ignored."""
    raw = params.get("numbers", "")
    return [n.strip() for n in raw.split(",")] if raw.strip() else []


def validate(
    params: dict[str, str], numbers: list[str], config: SimConfig, now: float
) -> BrandSubmit:
    """Check a request's content; raise :class:`Rejection`.

    The count is checked before the numbers themselves so an oversized request
    is refused without reading all of it.
    """
    if not numbers:
        raise Rejection(5, "numbers is empty")
    if len(numbers) > config.brand_max_numbers:
        raise Rejection(15, f"{len(numbers)} numbers, at most {config.brand_max_numbers}")
    for number in numbers:
        if not _NUMBER_RE.fullmatch(number):
            raise Rejection(5, f"number {number!r}: 8-15 digits, without '+' or '00'")
    text = params.get("text", "")
    try:
        parts = analyze(text, max_parts=config.brand_max_parts).segments
    except TextTooLong as exc:
        raise Rejection(13, f"text needs {exc.parts} parts, at most {exc.max_parts}") from None
    except TextError:
        raise Rejection(8, "text is empty") from None
    stop_list = _boolean(params, "stopList", default=True)
    otp = _boolean(params, "otp", default=False)
    send_at = None
    if send_time := params.get("sendTime", ""):
        send_at = _parse_send_time(send_time, config.tzinfo)
        if send_at is None or send_at <= now:
            raise Rejection(12, f"sendTime {send_time!r}: Y-m-d H:i, later than now")
    return BrandSubmit(numbers, text, parts, send_at, otp, stop_list)


def _boolean(params: dict[str, str], name: str, *, default: bool) -> bool:
    value = params.get(name)
    if value is None:
        return default
    flag = _BOOLEANS.get(value.strip().lower())
    if flag is None:
        raise Rejection(8, f"{name} must be true or false")
    return flag


def _parse_send_time(value: str, tz: dt.tzinfo) -> float | None:
    try:
        when = dt.datetime.strptime(value.strip(), SEND_TIME_FORMAT)
    except ValueError:
        return None
    return when.replace(tzinfo=tz).timestamp()


def accepted(messages: list[dict[str, str]]) -> SimResponse:
    return json_response(200, {"status": "OK", "messages": messages})


def error(
    code: int, detail: str | None = None, headers: dict[str, str] | None = None
) -> SimResponse:
    """``{"status": "ERROR", "code", "message"}`` with the decided HTTP status."""
    message = f"{describe(code)}: {detail}" if detail else describe(code)
    return json_response(
        brand_http_status(code), {"status": "ERROR", "code": code, "message": message}, headers
    )


def callback_params(
    key: str, sms_id: str, number: str, status_id: int, at: float, tz: dt.tzinfo
) -> dict[str, Any]:
    """The query of the vendor's GET delivery callback."""
    return {
        "key": key,
        "smsID": sms_id,
        "number": number,
        "statusID": status_id,
        "date": dt.datetime.fromtimestamp(at, tz).strftime(CALLBACK_DATE_FORMAT),
    }
