"""Reading brand delivery callbacks (the query of a GET).

``statusID`` maps to ours (shared/providers): 0 Sent -> sent, 1 Delivered ->
delivered, 2 Failed -> failed, 3 Pending -> sent (the provider has it,
delivery not yet known), 4 Error -> failed; anything else is kept raw as
``unknown``. The report names the message by the provider's ``smsID``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from models.reports import DeliveryReport
from models.status import MessageStatus
from providers.brand.protocol import CALLBACK_DATE_FORMAT, CallbackField, StatusId
from providers.report_parsing import ReportError, parse_time, refuse_nul

S = MessageStatus

STATUS_FIELD = CallbackField.STATUS_ID
STATUS: dict[str, MessageStatus] = {
    str(StatusId.SENT.value): S.SENT,
    str(StatusId.DELIVERED.value): S.DELIVERED,
    str(StatusId.FAILED.value): S.FAILED,
    str(StatusId.PENDING.value): S.SENT,
    str(StatusId.ERROR.value): S.FAILED,
}


def parse_report(params: Mapping[str, Any]) -> DeliveryReport:
    """From the callback's query (``key`` is checked by the receiver, not here)."""
    refuse_nul(params)
    sms_id = (params.get(CallbackField.SMS_ID) or "").strip()
    if not sms_id:
        raise ReportError(f"{CallbackField.SMS_ID}: missing")
    raw = (params.get(CallbackField.STATUS_ID) or "").strip()
    if not raw:
        raise ReportError(f"{CallbackField.STATUS_ID}: missing")
    return DeliveryReport(
        adapter="brand",
        status=STATUS.get(raw, S.UNKNOWN),
        raw_status=raw,
        provider_message_id=sms_id,
        number=params.get(CallbackField.NUMBER),
        at=parse_time(params.get(CallbackField.DATE), CALLBACK_DATE_FORMAT),
        status_field=STATUS_FIELD,
    )
