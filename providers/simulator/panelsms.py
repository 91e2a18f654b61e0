"""The panelsms ``sendMtSms.php`` API: its parameters, checks and answers.

Pure functions over the request parameters; :mod:`.core` calls them in the
vendor's order (account, key, faults, then content) and keeps the state.
Where the vendor text is silent the choices are the ones in
``shared/providers/README.md``; the rest are stated where they are made.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from models.sms_text import PART_LIMIT, SINGLE_LIMIT, Encoding, gsm7_length, is_gsm7, ucs2_length
from providers.codes import describe
from providers.simulator.config import SimConfig
from providers.simulator.wire import (
    XML_TYPE,
    Rejection,
    SimResponse,
    json_response,
    text_response,
)

ROUTE = "/sendMtSms.php"

_SENDER_RE = re.compile(r"[A-Za-z0-9]{1,11}|\+?[0-9]{1,16}")
_DESTINATION_RE = re.compile(r"\+[0-9]{8,15}")
_HEX_RE = re.compile(r"[0-9A-Fa-f]+")
_DIGITS_RE = re.compile(r"[0-9]+")
_DCS_VALUES = frozenset({0, 1, 2, 3, 4, 8})
_BINARY_DCS = frozenset({2, 4})
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}
# Concatenation UDH prefixes (UDHL, IEI, IE length) -> hex digits of the whole
# header: 8-bit reference (the usual one) and 16-bit reference.
_CONCAT_UDH = {"050003": 12, "060804": 14}


@dataclass(frozen=True, slots=True)
class PanelSubmit:
    """One accepted part, as the simulator records it."""

    to: str
    message: str
    transaction_id: str | None
    seq: int  # part sequence from a concatenation UDH; 1 without one
    length: int  # in the units of the encoding: septets, UTF-16 units or Latin-1 chars
    confirmation: bool
    callback_url: str | None
    send_at: float | None  # scheduledDeliveryTime as a unix time


def response_type(params: dict[str, str]) -> str:
    """``json``, ``xml``, or ``plain`` for anything else (the vendor default)."""
    value = params.get("responseType", "").strip().lower()
    return value if value in ("json", "xml") else "plain"


def authenticate(params: dict[str, str], config: SimConfig) -> None:
    """Code 1 for a missing, unknown or disabled user; 2 for a wrong apiKey."""
    user = params.get("user", "")
    expected = config.panelsms_users.get(user)
    if expected is None or user in config.disabled_users:
        raise Rejection(1, f"user {user!r} is unknown or disabled")
    if not hmac.compare_digest(params.get("apiKey", "").encode(), expected.encode()):
        raise Rejection(2, "apiKey does not match the user")


def validate(params: dict[str, str], now: float, tz: dt.tzinfo) -> PanelSubmit:
    """Check the content of a request in the vendor's order; raise :class:`Rejection`."""
    sender = params.get("senderId", "")
    if sender and not _SENDER_RE.fullmatch(sender):
        raise Rejection(4, f"senderId {sender!r}: up to 11 letters/digits or 16 digits")
    to = params.get("to", "")
    if not _DESTINATION_RE.fullmatch(to):
        raise Rejection(5, f"to {to!r}: '+' and 8-15 digits (URL-encode the '+')")
    dcs = _dcs(params.get("dcs", ""))
    seq, concatenated = _udh(params.get("udh", ""))
    message = params.get("message", "")
    if not message:
        raise Rejection(8, "message is empty")
    if dcs in _BINARY_DCS:
        raise Rejection(15, "binary SMS (dcs 2/4) is not supported by the simulator")
    encoding, length = _measure(message, dcs)
    limit = (PART_LIMIT if concatenated else SINGLE_LIMIT)[encoding]
    if length > limit:
        raise Rejection(13, f"{length} units, at most {limit} in this part")
    send_at = None
    if scheduled := params.get("scheduledDeliveryTime", ""):
        send_at = _when(scheduled, now, tz)
        if send_at is None or send_at <= now:
            raise Rejection(12, f"scheduledDeliveryTime {scheduled!r} is unreadable or past")
    validity = params.get("validityPeriod", "")
    if validity and _when(validity, now, tz) is None:
        raise Rejection(8, f"validityPeriod {validity!r}: seconds or an ISO date-time")
    confirmation = _BOOLEANS.get(params.get("confirmation", "false").strip().lower())
    if confirmation is None:
        raise Rejection(8, "confirmation must be true or false")
    return PanelSubmit(
        to=to,
        message=message,
        transaction_id=params.get("transactionId") or None,
        seq=seq,
        length=length,
        confirmation=confirmation,
        callback_url=params.get("callbackUrl") or None,
        send_at=send_at,
    )


def _dcs(value: str) -> int:
    # Absent means the vendor's "0: Default", which must then be GSM-7 text.
    if not value:
        return 0
    if not _DIGITS_RE.fullmatch(value) or int(value) not in _DCS_VALUES:
        raise Rejection(14, f"dcs {value!r} is not one of 0, 1, 2, 3, 4, 8")
    return int(value)


def _udh(udh: str) -> tuple[int, bool]:
    """(part sequence, is a concatenation header); code 10 if malformed.

    Any other even-length hex header (the vendor's flash ``0100``) is passed
    through unread, as an SMSC does.
    """
    if not udh:
        return 1, False
    if len(udh) % 2 or not _HEX_RE.fullmatch(udh):
        raise Rejection(10, f"udh {udh!r} is not an even-length hex string")
    size = _CONCAT_UDH.get(udh[:6])
    if size is None:
        return 1, False
    if len(udh) != size:
        raise Rejection(10, f"udh {udh!r}: a concatenation header has {size} hex digits")
    total, seq = int(udh[-4:-2], 16), int(udh[-2:], 16)
    if total < 1 or not 1 <= seq <= total:
        raise Rejection(10, f"udh {udh!r}: part {seq} of {total}")
    return seq, True


def _measure(message: str, dcs: int) -> tuple[Encoding, int]:
    """The encoding whose limits apply and the length in its units.

    dcs 0 and 1 are GSM-7 (septets, extension characters two); dcs 8 is UCS-2
    (UTF-16 units). dcs 3, Latin-1, is counted in characters against the GSM-7
    limits: the vendor calls Latin-1 its default alphabet, with 160 characters.
    """
    if dcs == 8:
        return Encoding.UCS2, ucs2_length(message)
    if dcs == 3:
        try:
            message.encode("latin-1")
        except UnicodeEncodeError:
            raise Rejection(8, "text is not Latin-1; use dcs=8") from None
        return Encoding.GSM7, len(message)
    if not is_gsm7(message):
        raise Rejection(8, "text is not GSM-7; use dcs=8")
    return Encoding.GSM7, gsm7_length(message)


def _when(value: str, now: float, tz: dt.tzinfo) -> float | None:
    """Relative seconds or an ISO date-time (local to ``tz`` without an offset)."""
    value = value.strip()
    if _DIGITS_RE.fullmatch(value):
        return now + int(value)
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return when.timestamp()


def answer(
    rtype: str,
    *,
    code: int | None = None,
    transaction_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> SimResponse:
    """An answer in the requested format: OK without ``code``, ERROR with one.

    Always HTTP 200; roaming (code 3) carries the transactionId in JSON and XML
    since the message was sent.
    """
    if rtype == "json":
        inner: dict[str, Any] = {"status": "OK" if code is None else "ERROR"}
        if code is not None:
            inner["code"] = code
            inner["message"] = describe(code)
        if transaction_id is not None:
            inner["transactionId"] = transaction_id
        return json_response(200, {"response": inner}, headers)
    if rtype == "xml":
        if code is None:
            xml = (
                f"<status>OK</status><transactionId>{escape(transaction_id or '')}</transactionId>"
            )
        else:
            message = escape(describe(code))
            xml = f"<status>ERROR</status><code>{code}</code><message>{message}</message>"
            if transaction_id is not None:
                xml += f"<transactionId>{escape(transaction_id)}</transactionId>"
        body = f"<response>{xml}</response>".encode()
        return SimResponse(200, {"content-type": XML_TYPE, **(headers or {})}, body)
    text = f"OK_{transaction_id}" if code is None else f"ERROR_{code}"
    return text_response(200, text, headers)


def report_payload(
    transaction_id: str, status: str, destination: str, at: float, error_code: int | None
) -> dict[str, Any]:
    """The vendor's delivery report body (POSTed as JSON to the callbackUrl)."""
    return {
        "transactionId": transaction_id,
        "status": status,
        "destination": destination,
        "timestamp": dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "errorCode": error_code,
        "errorDescription": describe(error_code) if error_code is not None else None,
    }
