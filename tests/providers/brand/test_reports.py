"""Reading brand delivery callbacks."""

from __future__ import annotations

import datetime as dt

import pytest

from models.status import MessageStatus as S
from providers.brand.reports import parse_report as parse_brand_report
from providers.report_parsing import ReportError


@pytest.mark.parametrize(
    ("status_id", "expected"),
    [
        ("0", S.SENT),
        ("1", S.DELIVERED),
        ("2", S.FAILED),
        ("3", S.SENT),
        ("4", S.FAILED),
        ("9", S.UNKNOWN),
    ],
)
def test_brand_status_ids(status_id: str, expected: S) -> None:
    report = parse_brand_report(
        {
            "key": "k",
            "smsID": "abc",
            "number": "4917",
            "statusID": status_id,
            "date": "2026-02-01 23:30:05",
        }
    )
    assert report.status == expected
    assert report.raw_status == status_id
    assert report.provider_message_id == "abc"
    assert report.at == dt.datetime(2026, 2, 1, 23, 30, 5, tzinfo=dt.UTC)


def test_brand_report_missing_fields_are_named() -> None:
    with pytest.raises(ReportError, match="smsID"):
        parse_brand_report({"statusID": "1"})
    with pytest.raises(ReportError, match="statusID"):
        parse_brand_report({"smsID": "a"})
