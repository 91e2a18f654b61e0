"""The simulated brand API: which code answers which request.

Pure functions over the request parameters, like :mod:`.panelsms`. The wire
itself (names, number and time formats, answers and their HTTP statuses, the
callback) is :mod:`providers.brand.protocol`, shared with the adapter. The
route and the per-request limit are the simulator's settings.
"""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass

from models.sms_text import TextError, TextTooLong, analyze
from providers.brand.protocol import (
    NUMBER_RE,
    Param,
    read_boolean,
    read_send_time,
    split_numbers,
)
from providers.codes import Code, Rejection
from providers.simulator.config import SimConfig

ROUTE = "/brand/send"


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
    key = params.get(Param.KEY, "")
    brand_id = config.brand_keys.get(key) if key else None
    if brand_id is None:
        raise Rejection(Code.INVALID_API_KEY, "unknown key")
    if not hmac.compare_digest(params.get(Param.BRAND_ID, "").encode(), brand_id.encode()):
        raise Rejection(Code.ACCOUNT_DISABLED, "brandID does not belong to this key")


def numbers_of(params: dict[str, str]) -> list[str]:
    """The comma-separated numbers, blanks around them ignored."""
    return split_numbers(params.get(Param.NUMBERS, ""))


def validate(
    params: dict[str, str], numbers: list[str], config: SimConfig, now: float
) -> BrandSubmit:
    """Check a request's content; raise :class:`Rejection`.

    The count is checked before the numbers themselves so an oversized request
    is refused without reading all of it.
    """
    if not numbers:
        raise Rejection(Code.INVALID_DESTINATION, "numbers is empty")
    if len(numbers) > config.brand_max_numbers:
        raise Rejection(
            Code.NOT_SUPPORTED, f"{len(numbers)} numbers, at most {config.brand_max_numbers}"
        )
    for number in numbers:
        if not NUMBER_RE.fullmatch(number):
            raise Rejection(
                Code.INVALID_DESTINATION, f"number {number!r}: 8-15 digits, without '+' or '00'"
            )
    text = params.get(Param.TEXT, "")
    try:
        parts = analyze(text, max_parts=config.brand_max_parts).segments
    except TextTooLong as exc:
        raise Rejection(
            Code.MESSAGE_TOO_LONG, f"text needs {exc.parts} parts, at most {exc.max_parts}"
        ) from None
    except TextError:
        raise Rejection(Code.INVALID_MESSAGE_DATA, "text is empty") from None
    stop_list = _boolean(params, Param.STOP_LIST, default=True)
    otp = _boolean(params, Param.OTP, default=False)
    send_at = None
    if send_time := params.get(Param.SEND_TIME, ""):
        send_at = _parse_send_time(send_time, config.tzinfo)
        if send_at is None or send_at <= now:
            raise Rejection(
                Code.INVALID_SCHEDULED_TIME, f"sendTime {send_time!r}: Y-m-d H:i, later than now"
            )
    return BrandSubmit(numbers, text, parts, send_at, otp, stop_list)


def _boolean(params: dict[str, str], name: str, *, default: bool) -> bool:
    value = params.get(name)
    if value is None:
        return default
    flag = read_boolean(value)
    if flag is None:
        raise Rejection(Code.INVALID_MESSAGE_DATA, f"{name} must be true or false")
    return flag


def _parse_send_time(value: str, tz: dt.tzinfo) -> float | None:
    when = read_send_time(value, tz)
    return when.timestamp() if when is not None else None
