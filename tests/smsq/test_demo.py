"""The demo, shortened: the whole stack in one process, checked by its report.

It runs as a child process (``python -m smsq.demo``), as ``make demo`` runs
it: the demo sets ``SMSQ_*`` for its own stack and starts Celery workers,
which must not leak into the test process. The child gets no
``SMSQ_DATABASE_URL`` or ``SMSQ_REDIS_URL``, so it uses its temporary SQLite
file and its in-process Redis, never the test databases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from smsq.core.settings import load_providers_file
from smsq.demo.report import percentile
from smsq.demo.stack import providers_toml

ROOT = Path(__file__).resolve().parents[2]


def run_demo(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSQ_")}
    env["PYTHONPATH"] = str(ROOT)
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "smsq.demo", "--report", str(report), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    data = json.loads(report.read_text()) if report.exists() else {}
    return result, data


def test_a_short_demo_sends_everything_and_reports_it(tmp_path: Path) -> None:
    result, report = run_demo(tmp_path, "--recipients", "400", "--otps", "3", "--schedule-in", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smsq demo: summary" in result.stdout

    campaign = report["campaign"]
    assert report["completed"] is True
    assert campaign["recipients"] == 400
    assert campaign["sent"] == 400
    assert campaign["failed"] == 0
    assert campaign["delivered"] > 0  # reports came back through the API
    # The simulator answered some requests 6 (2 %): retried, never lost.
    assert report["retries_by_code"].get("6", 0) > 0
    assert report["panelsms_simulator"]["rejected_by_code"].get("6", 0) > 0
    assert [change["rate"] for change in report["rate_changes"]] == [100, 400]

    assert report["otp"]["sent"] == 3
    assert report["otp"]["latency_ms_p99"] < 2000

    scheduled = report["scheduled"]
    assert scheduled["status"] in ("sent", "delivered")
    # Never early (the claim refuses it), and within about a second.
    assert 0 <= scheduled["send_time_error_ms"] < 1500

    # No OTP text, credential or key in anything the demo printed.
    output = result.stdout + result.stderr
    for secret in ("Your code is", "demo-panel-key", "demo-brand-key", "demo-callback-key"):
        assert secret not in output
    assert not (tmp_path / "smsq.db").exists()


def test_the_demo_accounts_point_at_the_embedded_simulator(tmp_path: Path) -> None:
    path = tmp_path / "providers.toml"
    path.write_text(
        providers_toml({"panelsms": "http://127.0.0.1:9998", "brand": "http://127.0.0.1:9999"})
    )
    accounts = load_providers_file(path)
    assert str(accounts["panel"].url) == "http://127.0.0.1:9998/sendMtSms.php"
    assert str(accounts["brand"].url) == "http://127.0.0.1:9999/brand/send"
    assert accounts["panel"].rate == 100


@pytest.mark.parametrize(
    ("values", "share", "expected"),
    [([], 0.5, None), ([3.0, 1.0, 2.0], 0.5, 2.0), ([1.0, 2.0, 3.0, 4.0], 0.99, 4.0)],
)
def test_percentile_is_nearest_rank(
    values: list[float], share: float, expected: float | None
) -> None:
    assert percentile(values, share) == expected
