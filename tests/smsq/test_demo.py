"""The demo, shortened: the whole stack in one process, checked by its report,
its panelsms outage included (the campaign's route fails over to brand and back).

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
import typer
from typer.testing import CliRunner

from smsq.core.settings import load_providers_config
from smsq.demo import command as demo_command
from smsq.demo.options import DemoOptions
from smsq.demo.report import duplicates_at_providers, percentile
from smsq.demo.stack import providers_toml

ROOT = Path(__file__).resolve().parents[2]
RECIPIENTS = 3600
# The failover test's breaker probes every second instead of every 5 s: the
# breaker may open while panel's open connections still answer (up to ~3 s
# before the outage's --outage seconds begin) and a probe may fail just
# before panel is back, so with 5 s the campaign would have to run for about
# 8 s after the outage to be sure to see the come-back.
FAST_PROBES = {"SMSQ_BREAKER_PROBE_INTERVAL": "1"}


def run_demo(
    tmp_path: Path, *args: str, env_overrides: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSQ_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(env_overrides or {})
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


def test_a_short_demo_sends_everything_fails_over_and_reports_it(tmp_path: Path) -> None:
    result, report = run_demo(
        tmp_path,
        *("--recipients", str(RECIPIENTS), "--otps", "3", "--schedule-in", "3", "--outage", "3"),
        env_overrides=FAST_PROBES,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smsq demo: summary" in result.stdout

    campaign = report["campaign"]
    assert report["completed"] is True
    assert campaign["recipients"] == RECIPIENTS
    assert campaign["sent"] == RECIPIENTS
    assert campaign["failed"] == 0
    assert "unknown" not in campaign["by_status"]
    assert campaign["delivered"] > 0  # reports came back through the API
    # The simulator answered some requests 6 (2 %): retried, never lost.
    assert report["retries_by_code"].get("6", 0) > 0
    assert report["panelsms_simulator"]["rejected_by_code"].get("6", 0) > 0
    assert [change["rate"] for change in report["rate_changes"]] == [100, 200]
    # panel's bucket kept busy while the campaign waited (the outage left out).
    use = report["bucket_use"]
    assert use["account"] == "panel" and use["windows"] > 0 and use["median"] >= 0.9

    # The route: on panel, on brand while panel refused connections, back on panel.
    routing = report["routing"]
    assert routing["route"] == "bulk"
    assert routing["accounts"] == ["panel", "brand"]
    by_account = routing["campaign_by_account"]
    assert set(by_account) == {"panel", "brand"}
    assert by_account["panel"] > 0 and by_account["brand"] > 0
    assert sum(by_account.values()) == RECIPIENTS
    outage = routing["outage"]
    assert outage["account"] == "panel" and outage["fallback"] == "brand"
    assert outage["error"] is None and outage["cut_short"] is False
    # Gone for --outage seconds once its open connections have closed (<= ~3 s).
    assert outage["started_s"] < outage["down_s"] < outage["started_s"] + 12
    assert 2.9 <= outage["ended_s"] - outage["down_s"] < 5
    assert outage["length_s"] < 12
    assert outage["started_s"] < outage["first_on_fallback_s"]
    assert 0 < outage["failover_s"] < 5
    # The breaker's probe (every second here) closes it; a loaded machine adds some.
    assert outage["first_back_s"] > outage["ended_s"]
    assert 0 < outage["back_s"] < 5
    # panel's breaker, as the live view sampled it: opened by the refusals,
    # closed by a probe once panel was back, before the campaign came back.
    states = [change["state"] for change in routing["breaker_changes"]]
    assert states[0] == "closed" and "open" in states and states[-1] == "closed"
    assert outage["started_s"] <= outage["breaker_open_s"]
    # Sampled every 0.5 s (a loaded machine stretches that): about when the campaign came back.
    assert outage["ended_s"] < outage["breaker_closed_s"] <= outage["first_back_s"] + 2
    # Counted by number at both simulators: every message exactly once.
    assert report["duplicates_at_providers"] == 0
    sims = report["panelsms_simulator"]["accepted"] + report["brand_simulator"]["accepted"]
    assert sims == RECIPIENTS + 3 + 1  # the campaign, the OTPs, the scheduled message
    assert report["brand_simulator"]["accepted"] == by_account["brand"] + 3 + 1
    # Without a terminal, the account's changes are printed as they happen.
    assert "panel: refusing connections (demo fault) since" in result.stdout
    assert "panel outage" in result.stdout  # the summary's row

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
    config = load_providers_config(path)  # the route's checks pass (one sender, SMSQ)
    accounts = config.accounts
    assert str(accounts["panel"].url) == "http://127.0.0.1:9998/sendMtSms.php"
    assert str(accounts["brand"].url) == "http://127.0.0.1:9999/brand/send"
    assert accounts["panel"].rate == 100
    bulk = config.routes["bulk"]
    assert bulk.kinds == ("campaign",)
    assert bulk.accounts == ("panel", "brand")
    assert bulk.weights is None  # failover order, not a split
    assert list(config.routes) == ["bulk"]  # OTPs name their account, no route


def test_the_outage_can_be_turned_off_or_shortened(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[DemoOptions | None] = []

    def run_nothing(console: object, options: DemoOptions | None = None) -> int:
        seen.append(options)
        return 0

    # ``smsq.demo.command`` is also the command's name in ``smsq.demo``: patch the module.
    monkeypatch.setattr(sys.modules["smsq.demo.command"], "run_demo", run_nothing)
    app = typer.Typer()
    app.command()(demo_command)
    runner = CliRunner()
    assert runner.invoke(app, ["--no-failover"]).exit_code == 0
    assert runner.invoke(app, ["--outage", "4"]).exit_code == 0
    assert runner.invoke(app, []).exit_code == 0
    off, short, default = seen
    assert off is not None and off.failover is False
    assert short is not None and short.failover is True and short.outage == 4.0
    assert default == DemoOptions()


def test_duplicates_are_counted_over_both_providers() -> None:
    panel = {"per_number": {"491510": 1, "491511": 2}}
    brand = {"per_number": {"491512": 1, "491510": 1}}  # 491510 went out on both
    assert duplicates_at_providers([panel, brand]) == 2
    assert duplicates_at_providers([{"per_number": {"1": 1}}, {}]) == 0


@pytest.mark.parametrize(
    ("values", "share", "expected"),
    [([], 0.5, None), ([3.0, 1.0, 2.0], 0.5, 2.0), ([1.0, 2.0, 3.0, 4.0], 0.99, 4.0)],
)
def test_percentile_is_nearest_rank(
    values: list[float], share: float, expected: float | None
) -> None:
    assert percentile(values, share) == expected
