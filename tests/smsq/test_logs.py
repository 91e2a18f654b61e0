"""smsq's log formatter: tracebacks are plain text without local variables."""

from __future__ import annotations

import logging
import sys

import pytest

from smsq.core import logs


def _record_with_traceback() -> logging.LogRecord:
    otp_text = "Your code is 493817"  # a local of the failing frame
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        assert otp_text
        return logging.LogRecord(
            "smsq.test", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )


@pytest.mark.parametrize("json", [False, True])
def test_a_traceback_is_plain_and_shows_no_locals(json: bool) -> None:
    line = logs.formatter(json=json).format(_record_with_traceback())
    assert "RuntimeError: boom" in line
    assert "493817" not in line  # locals are not rendered: they hold secrets
    assert "╭" not in line  # not rich's boxed traceback (slow, holds the handler lock)
