"""What every vendor's report parser shares: refusing what cannot be stored."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from providers.brand.reports import parse_report as parse_brand_report
from providers.panelsms.reports import parse_report as parse_panelsms_report
from providers.report_parsing import ReportError


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
