"""No log line of the whole test run holds an API key, a credential or an OTP.

``tests/conftest.py`` keeps every log record of this process (rendered as in
production, JSON) and ``tests/integration`` adds the logs of its API, worker
and beat processes. This module is marked ``last`` (``tests/conftest.py``
moves it after every other selected test, whatever its directory is called)
and scans them all. Its
first test makes sure the scan has something to bite on even when run alone:
it drives the paths that handle secrets (API key auth, the drop-in's
``apiKey``, brand's callback ``key``, an OTP text) with logging at DEBUG.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest

from smsq.core.settings import DEFAULT_PROVIDERS

pytestmark = pytest.mark.last  # after every other test: see tests/conftest.py

# Values that must never be logged. Full API keys and webhook secrets by their
# shape; provider credentials by the values the tests configure; OTPs by the
# texts the tests send.
KEY_SHAPES = {
    "an API key": re.compile(r"smsq_[a-z0-9]{8}_[A-Za-z0-9_\-]{16,}"),
    "a webhook secret": re.compile(r"whsec_[A-Za-z0-9+/=]{16,}"),
}
CREDENTIALS = sorted(
    {
        str(value)
        for account in DEFAULT_PROVIDERS.values()
        for name, value in account.items()
        if name in ("api_key", "key", "callback_key")
    }
    | {"cb-secret"}  # tests/integration's brand callback key
)
OTP_TEXTS = ["Your code is 123456", "Code 999999", "Your code is 424242"]


def find_secrets(text: str) -> list[str]:
    """What in ``text`` must not be there, described without repeating it whole."""
    found = [
        f"{what} ({m.group()[:10]}…)" for what, rx in KEY_SHAPES.items() for m in rx.finditer(text)
    ]
    found += [f"credential {c[:6]}…" for c in CREDENTIALS if c in text]
    found += [f"OTP text {t[:8]}…" for t in OTP_TEXTS if t in text]
    return found


def test_the_scanner_finds_what_it_looks_for() -> None:
    line = 'event="x" auth="Bearer smsq_ab12cd34_Zm9vYmFyYmF6cXV4cXV1eA" text="Your code is 424242"'
    assert find_secrets(line) == ["an API key (smsq_ab12c…)", "OTP text Your cod…"]
    assert find_secrets("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw and demo-panel-key") == [
        "a webhook secret (whsec_MfKQ…)",
        "credential demo-p…",
    ]
    assert find_secrets('event="dlr.recorded" prefix="ab12cd34" status="delivered"') == []


def test_no_log_line_of_the_run_holds_a_secret(tests_still_to_run: list[str]) -> None:
    # Scanning before the other tests ran would prove nothing about their logs.
    assert not tests_still_to_run, f"the scan runs before {tests_still_to_run[:5]}"
    archive = Path(os.environ["SMSQ_TEST_LOG_ARCHIVE"])
    for handler in logging.getLogger().handlers:
        handler.flush()
    files = sorted(p for p in archive.iterdir() if p.is_file())
    lines = 0
    problems: list[str] = []
    for path in files:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            lines += 1
            problems += [f"{path.name}:{number}: {found}" for found in find_secrets(line)]
    if lines == 0:
        pytest.fail(f"nothing was logged into {archive}: the scan would prove nothing")
    assert not problems, "secrets in the logs:\n" + "\n".join(problems[:50])
