"""A vendor code or a bare HTTP status as an error: one reading for every vendor."""

from __future__ import annotations

import pytest

from providers.codes import RETRYABLE_CODES, Code
from providers.errors import (
    PermanentError,
    ProviderUnavailable,
    QueueFull,
    RetryableError,
    Throttled,
    error_for_code,
    error_for_http_status,
)


@pytest.mark.parametrize(
    ("status", "kind"),
    [(429, Throttled), (503, QueueFull), (500, ProviderUnavailable), (502, ProviderUnavailable)],
)
def test_http_status_errors(status: int, kind: type[Exception]) -> None:
    error = error_for_http_status(status, retry_after=2.0)
    assert isinstance(error, kind) and error.retry_after == 2.0


@pytest.mark.parametrize("status", [200, 400, 401, 404])
def test_other_statuses_leave_it_to_the_body(status: int) -> None:
    assert error_for_http_status(status) is None


@pytest.mark.parametrize("code", [c for c in Code if c is not Code.ROAMING])
def test_codes(code: Code) -> None:
    error = error_for_code(code, retry_after=1.0)
    assert error.code == code
    assert isinstance(error, RetryableError) is (code in RETRYABLE_CODES)
    if code not in RETRYABLE_CODES:
        assert isinstance(error, PermanentError)
