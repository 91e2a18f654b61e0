"""Reading panelsms delivery reports (the JSON body POSTed to ``callbackUrl``).

``status`` values map to ours (shared/providers): delivered, sent, failed,
expired and undelivered to the status of the same name, rejected to failed;
anything else is kept raw as ``unknown``. The report names the message by our
own id (``transactionId``), which is also the id panelsms knows it by.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from models.reports import DeliveryReport
from models.status import MessageStatus
from providers.panelsms.protocol import ReportField, ReportStatus
from providers.report_parsing import ReportError, parse_iso, refuse_nul

S = MessageStatus

STATUS_FIELD = ReportField.STATUS
STATUS: dict[str, MessageStatus] = {
    ReportStatus.DELIVERED: S.DELIVERED,
    ReportStatus.SENT: S.SENT,
    ReportStatus.FAILED: S.FAILED,
    ReportStatus.EXPIRED: S.EXPIRED,
    ReportStatus.UNDELIVERED: S.UNDELIVERED,
    ReportStatus.REJECTED: S.FAILED,
}


def parse_report(body: Mapping[str, Any]) -> DeliveryReport:
    refuse_nul(body)
    tid = body.get(ReportField.TRANSACTION_ID)
    if not isinstance(tid, str | int) or not str(tid).strip():
        raise ReportError(f"{ReportField.TRANSACTION_ID}: missing")
    raw = body.get(ReportField.STATUS)
    if not isinstance(raw, str) or not raw.strip():
        raise ReportError(f"{ReportField.STATUS}: missing")
    code = body.get(ReportField.ERROR_CODE)
    try:
        error_code = int(code) if code not in (None, "") else None
    except (TypeError, ValueError):
        error_code = None
    detail = body.get(ReportField.ERROR_DESCRIPTION)
    destination = body.get(ReportField.DESTINATION)
    message_id = str(tid).strip()
    return DeliveryReport(
        adapter="panelsms",
        status=STATUS.get(raw.strip().lower(), S.UNKNOWN),
        raw_status=raw,
        message_id=message_id,
        # The adapter sends our id as transactionId: it is panelsms's id too.
        provider_message_id=message_id,
        number=str(destination) if destination else None,
        error_code=error_code,
        error_detail=str(detail) if detail else None,
        at=parse_iso(body.get(ReportField.TIMESTAMP)),
        status_field=STATUS_FIELD,
    )
