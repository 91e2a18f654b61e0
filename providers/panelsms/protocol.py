"""The panelsms ``sendMtSms.php`` protocol: the vendor's wire facts, once.

The adapter builds requests and reads answers with it; the simulator reads
requests and renders answers with it; the drop-in (``producer.http``) reads
and answers exactly like the simulator, with the same functions, so the three
cannot drift. Nothing here does I/O or knows who calls it: answers are plain
:class:`~providers.wire.WireAnswer` values each caller wraps.

Source: the vendor's document and the decisions in ``shared/providers``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from xml.sax.saxutils import escape

from models.sms_text import Encoding
from providers.codes import describe
from providers.wire import WireAnswer, json_answer, text_answer, xml_answer

PATH: Final = "/sendMtSms.php"


class Param:
    """The request parameter names."""

    USER: Final = "user"
    API_KEY: Final = "apiKey"
    TO: Final = "to"
    MESSAGE: Final = "message"
    SENDER_ID: Final = "senderId"
    TRANSACTION_ID: Final = "transactionId"
    CONFIRMATION: Final = "confirmation"
    CALLBACK_URL: Final = "callbackUrl"
    DCS: Final = "dcs"
    UDH: Final = "udh"
    VALIDITY_PERIOD: Final = "validityPeriod"
    SCHEDULED_DELIVERY_TIME: Final = "scheduledDeliveryTime"
    RESPONSE_TYPE: Final = "responseType"


SECRET_PARAMS: Final = frozenset({Param.API_KEY})

# --- formats of the parameters ---------------------------------------------

SENDER_RE: Final = re.compile(r"[A-Za-z0-9]{1,11}|\+?[0-9]{1,16}")  # 11 letters/digits or 16 digits
DESTINATION_RE: Final = re.compile(r"\+[0-9]{8,15}")  # '+' and international digits
DIGITS_RE: Final = re.compile(r"[0-9]+")

# Data coding schemes. 0 is the vendor's "Default" (documented as Latin-1),
# 1 GSM-7, 3 Latin-1, 8 UCS-2, 2 and 4 binary.
DCS_VALUES: Final = frozenset({0, 1, 2, 3, 4, 8})
BINARY_DCS: Final = frozenset({2, 4})
LATIN1_DCS: Final = 3
UCS2_DCS: Final = 8
# What smsq sends for a text: 1, not 0, for GSM-7 (0 cannot carry '€').
DCS_FOR_ENCODING: Final = {Encoding.GSM7: 1, Encoding.UCS2: UCS2_DCS}

# User data headers, as hex.
FLASH_UDH: Final = "0100"  # the vendor's flash header; single-part texts only
HEX_UDH_RE: Final = re.compile(r"(?:[0-9A-Fa-f]{2})+")  # any header: even-length hex
# Concatenation headers (UDHL, IEI, IE length) -> hex digits of the whole header:
# 8-bit reference (the usual one) and 16-bit reference.
CONCAT_UDH_SIZES: Final = {"050003": 12, "060804": 14}


def concat_udh(reference: int, total: int, sequence: int) -> str:
    """The 8-bit-reference concatenation header, as hex."""
    return f"050003{reference:02X}{total:02X}{sequence:02X}"


TRUE: Final = "true"
BOOLEANS: Final = {"true": True, "1": True, "false": False, "0": False}


def read_boolean(value: str) -> bool | None:
    """The vendor's boolean (``true``/``1``, ``false``/``0``), or None if it is none."""
    return BOOLEANS.get(value.strip().lower())


def read_time(value: str, tz: dt.tzinfo) -> int | dt.datetime:
    """``scheduledDeliveryTime``/``validityPeriod``: relative seconds or an ISO date-time.

    Returns the seconds (an int) or an aware datetime (read in ``tz`` without an
    offset); raises ValueError if it is neither.
    """
    value = value.strip()
    if DIGITS_RE.fullmatch(value):
        return int(value)
    when = dt.datetime.fromisoformat(value)
    return when if when.tzinfo is not None else when.replace(tzinfo=tz)


def format_time(when: dt.datetime) -> str:
    """An absolute time as smsq sends it: ISO 8601 in UTC, without an offset."""
    return when.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds")


# --- answers ---------------------------------------------------------------

RESPONSE_TYPES: Final = ("json", "xml")  # anything else is plain, the default


def response_type(params: Mapping[str, str]) -> str:
    """``json``, ``xml``, or ``plain`` for anything else (the vendor default)."""
    value = params.get(Param.RESPONSE_TYPE, "").strip().lower()
    return value if value in RESPONSE_TYPES else "plain"


def render_answer(
    rtype: str,
    *,
    code: int | None = None,
    transaction_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> WireAnswer:
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
        return json_answer(200, {"response": inner}, headers)
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
        return xml_answer(200, f"<response>{xml}</response>", headers)
    text = f"OK_{transaction_id}" if code is None else f"ERROR_{code}"
    return text_answer(200, text, headers)


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer read back: ``code`` is None for OK."""

    code: int | None
    transaction_id: str | None

    @property
    def ok(self) -> bool:
        return self.code is None


def parse_answer(body: str) -> Answer:
    """Read an answer in any of the three formats (sniffed); ValueError if unreadable."""
    body = body.strip()
    try:
        if body.startswith("{"):
            data = json.loads(body)["response"]
            status, code, tid = str(data["status"]), data.get("code"), data.get("transactionId")
        elif body.startswith("<"):
            root = ET.fromstring(body)
            status = (root.findtext("status") or "").strip()
            code, tid = root.findtext("code"), root.findtext("transactionId")
        elif body.startswith("OK_"):
            return Answer(None, body[3:] or None)
        elif body.startswith("ERROR_"):
            return Answer(int(body[6:]), None)
        else:
            raise ValueError("unrecognised")
        tid = str(tid) if tid not in (None, "") else None
        if status == "OK":
            return Answer(None, tid)
        if status == "ERROR" and code is not None:
            return Answer(int(code), tid)
        raise ValueError("no status")
    except (KeyError, TypeError, ET.ParseError) as exc:
        raise ValueError(f"unreadable panelsms answer: {exc!r}") from None


# --- delivery reports (POSTed as JSON to the callbackUrl) ----------------------


class ReportField:
    TRANSACTION_ID: Final = "transactionId"
    STATUS: Final = "status"
    DESTINATION: Final = "destination"
    TIMESTAMP: Final = "timestamp"
    ERROR_CODE: Final = "errorCode"
    ERROR_DESCRIPTION: Final = "errorDescription"


class ReportStatus:
    """``status`` values: ``delivered`` is the vendor's; the others are seen too."""

    DELIVERED: Final = "delivered"
    SENT: Final = "sent"
    FAILED: Final = "failed"
    EXPIRED: Final = "expired"
    UNDELIVERED: Final = "undelivered"
    REJECTED: Final = "rejected"


REPORT_TIMESTAMP_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"


def report_payload(
    transaction_id: str, status: str, destination: str, at: float, error_code: int | None
) -> dict[str, Any]:
    """The vendor's delivery report body."""
    return {
        ReportField.TRANSACTION_ID: transaction_id,
        ReportField.STATUS: status,
        ReportField.DESTINATION: destination,
        ReportField.TIMESTAMP: dt.datetime.fromtimestamp(at, dt.UTC).strftime(
            REPORT_TIMESTAMP_FORMAT
        ),
        ReportField.ERROR_CODE: error_code,
        ReportField.ERROR_DESCRIPTION: describe(error_code) if error_code is not None else None,
    }
