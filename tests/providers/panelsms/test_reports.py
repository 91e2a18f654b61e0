"""Reading panelsms delivery reports."""

from __future__ import annotations

import datetime as dt

import pytest

from models.status import MessageStatus as S
from providers.panelsms.reports import parse_report as parse_panelsms_report
from providers.report_parsing import ReportError


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("delivered", S.DELIVERED),
        ("sent", S.SENT),
        ("failed", S.FAILED),
        ("expired", S.EXPIRED),
        ("rejected", S.FAILED),
        ("undelivered", S.UNDELIVERED),
        ("DELIVRD", S.UNKNOWN),  # kept raw, never dropped
    ],
)
def test_panelsms_statuses(status: str, expected: S) -> None:
    # The vendor's own example body, with the status varied.
    report = parse_panelsms_report(
        {
            "transactionId": "1234569",
            "status": status,
            "destination": "+1222333444",
            "timestamp": "2024-01-15T10:30:45Z",
            "errorCode": None,
            "errorDescription": None,
        }
    )
    assert report.status == expected
    assert report.raw_status == status
    assert report.message_id == "1234569"
    assert report.at == dt.datetime(2024, 1, 15, 10, 30, 45, tzinfo=dt.UTC)


def test_panelsms_error_code_kept() -> None:
    report = parse_panelsms_report(
        {
            "transactionId": "x",
            "status": "undelivered",
            "errorCode": "11",
            "errorDescription": "barred",
        }
    )
    assert (report.error_code, report.error_detail) == (11, "barred")


@pytest.mark.parametrize(
    ("body", "field"),
    [({"status": "delivered"}, "transactionId"), ({"transactionId": "x"}, "status")],
)
def test_panelsms_report_missing_fields_are_named(body: dict[str, str], field: str) -> None:
    with pytest.raises(ReportError, match=field):
        parse_panelsms_report(body)
