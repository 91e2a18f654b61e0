from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from models.status import MessageStatus as S
from providers.reports import ReportError, parse_brand_report, parse_panelsms_report


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


def test_brand_report_missing_fields_are_named() -> None:
    with pytest.raises(ReportError, match="smsID"):
        parse_brand_report({"statusID": "1"})
    with pytest.raises(ReportError, match="statusID"):
        parse_brand_report({"smsID": "a"})


# Regression: found by the fuzz of the receivers (tests/producer/http/test_fuzz.py).
# A NUL character reached PostgreSQL, which refused it: a 500 instead of a 422.
@pytest.mark.parametrize(
    "parse",
    [
        lambda: parse_brand_report({"smsID": "77\x00", "statusID": "1"}),
        lambda: parse_brand_report({"smsID": "77", "statusID": "1", "date": "\x00"}),
        lambda: parse_panelsms_report({"transactionId": "t", "status": "delivered", "x": ["\x00"]}),
        lambda: parse_panelsms_report({"transactionId": "t", "status": "ok", "\x00": 1}),
    ],
)
def test_a_report_with_a_nul_character_is_refused(parse: Callable[[], object]) -> None:
    with pytest.raises(ReportError, match="NUL"):
        parse()
