"""Delivery reports from each provider, read into one shape.

The mapping of provider statuses to ours lives here (shared/providers/README):

- brand ``statusID``: 0 Sent -> sent, 1 Delivered -> delivered, 2 Failed ->
  failed, 3 Pending -> sent (the provider has it, delivery not yet known),
  4 Error -> failed.
- panelsms ``status``: delivered, sent, failed, expired and undelivered map to
  the status of the same name; rejected -> failed.

Anything else is kept raw and maps to ``unknown``; it is never dropped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models.status import MessageStatus

S = MessageStatus

BRAND_STATUS: dict[str, MessageStatus] = {
    "0": S.SENT,
    "1": S.DELIVERED,
    "2": S.FAILED,
    "3": S.SENT,
    "4": S.FAILED,
}
PANELSMS_STATUS: dict[str, MessageStatus] = {
    "delivered": S.DELIVERED,
    "sent": S.SENT,
    "failed": S.FAILED,
    "expired": S.EXPIRED,
    "undelivered": S.UNDELIVERED,
    "rejected": S.FAILED,
}


class ReportError(ValueError):
    """A report we cannot use; the message names the field."""


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    adapter: str
    status: MessageStatus
    raw_status: str
    message_id: str | None = None  # ours (panelsms transactionId)
    provider_message_id: str | None = None  # brand smsID
    number: str | None = None
    error_code: int | None = None
    error_detail: str | None = None
    at: dt.datetime | None = None


def parse_brand_report(params: Mapping[str, str]) -> DeliveryReport:
    """From the callback's query (``key`` is checked by the receiver, not here)."""
    _refuse_nul(params)
    sms_id = (params.get("smsID") or "").strip()
    if not sms_id:
        raise ReportError("smsID: missing")
    raw = (params.get("statusID") or "").strip()
    if not raw:
        raise ReportError("statusID: missing")
    return DeliveryReport(
        adapter="brand",
        status=BRAND_STATUS.get(raw, S.UNKNOWN),
        raw_status=raw,
        provider_message_id=sms_id,
        number=params.get("number"),
        at=_parse_time(params.get("date"), "%Y-%m-%d %H:%M:%S"),
    )


def parse_panelsms_report(body: Mapping[str, Any]) -> DeliveryReport:
    _refuse_nul(body)
    tid = body.get("transactionId")
    if not isinstance(tid, str | int) or not str(tid).strip():
        raise ReportError("transactionId: missing")
    raw = body.get("status")
    if not isinstance(raw, str) or not raw.strip():
        raise ReportError("status: missing")
    code = body.get("errorCode")
    try:
        error_code = int(code) if code not in (None, "") else None
    except (TypeError, ValueError):
        error_code = None
    detail = body.get("errorDescription")
    return DeliveryReport(
        adapter="panelsms",
        status=PANELSMS_STATUS.get(raw.strip().lower(), S.UNKNOWN),
        raw_status=raw,
        message_id=str(tid).strip(),
        number=str(body["destination"]) if body.get("destination") else None,
        error_code=error_code,
        error_detail=str(detail) if detail else None,
        at=_parse_iso(body.get("timestamp")),
    )


def _parse_time(value: str | None, fmt: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.strptime(value.strip(), fmt).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _parse_iso(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _refuse_nul(value: Any, where: str = "") -> None:
    """A NUL character is no part of any report, and PostgreSQL cannot store it."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ReportError(f"{where or 'report'}: contains a NUL character")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _refuse_nul(key, where or "a field name")
            _refuse_nul(item, str(key)[:40].replace("\x00", ""))
    elif isinstance(value, list):
        for item in value:
            _refuse_nul(item, where)
