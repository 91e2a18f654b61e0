"""The API's ``/metrics``: what a Prometheus scrape shows after requests and reports.

Counters live in the process's default registry and other tests add to them,
so every assertion is on the change across the action under test.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session

from models.ledger.reports import record_report
from models.reports import DeliveryReport
from models.status import MessageStatus as S
from models.tables import Message
from producer.http import metrics
from producer.http.dlr import report_applier


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def app(make_api: Callable[..., FastAPI]) -> FastAPI:
    return make_api()  # create_app adds the RequestMetrics middleware and GET /metrics


@pytest.fixture
def client(app: FastAPI, make_client: Callable[..., httpx.AsyncClient]) -> httpx.AsyncClient:
    return make_client(app)


def scraped(text: str) -> dict[str, float]:
    """``name{labels}`` → value, from a Prometheus text exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            found[f"{s.name}{{{labels}}}"] = s.value
    return found


async def test_metrics_answers_without_a_key_in_prometheus_format(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert "# TYPE smsq_dlr_lag_seconds histogram" in answer.text
    assert "# TYPE smsq_http_requests_total counter" in answer.text


async def test_requests_are_counted_by_route_template(client: httpx.AsyncClient) -> None:
    ok = ("smsq_http_requests_total", {"route": "/healthz", "method": "GET", "status": "200"})
    unmatched = (
        "smsq_http_requests_total",
        {"route": "unmatched", "method": "GET", "status": "404"},
    )
    before = [value(n, **labels) for n, labels in (ok, unmatched)]
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/no/such/path/0192abcd")).status_code == 404
    after = [value(n, **labels) for n, labels in (ok, unmatched)]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1]
    text = (await client.get("/metrics")).text
    assert "0192abcd" not in text  # a raw path never becomes a label


async def test_a_delivery_report_shows_its_lag_since_the_send(
    app: FastAPI, client: httpx.AsyncClient, make_message: Callable[..., Message]
) -> None:
    # Counted when applied: by the app's applier, drained here (report_applier).
    drain = report_applier(app).drain
    sent_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
    message = make_message(status=S.SENT, sent_at=sent_at, provider_message_id=None)
    labels = {"provider": "panel", "status": "delivered"}
    reports, lags, lag_sum = (
        value("smsq_delivery_reports_total", **labels),
        value("smsq_dlr_lag_seconds_count", **labels),
        value("smsq_dlr_lag_seconds_sum", **labels),
    )
    body = {"transactionId": message.id, "status": "delivered"}
    assert (await client.post("/dlr/panelsms", json=body)).status_code == 200
    assert drain() == 1
    assert value("smsq_delivery_reports_total", **labels) - reports == 1
    assert value("smsq_dlr_lag_seconds_count", **labels) - lags == 1
    assert 29 <= value("smsq_dlr_lag_seconds_sum", **labels) - lag_sum < 60

    # The provider repeats itself: the message was counted once.
    assert (await client.post("/dlr/panelsms", json=body)).status_code == 200
    assert drain() == 1
    assert value("smsq_dlr_lag_seconds_count", **labels) - lags == 1

    unmatched = value("smsq_dlr_unmatched_total", adapter="panelsms")
    stranger = {"transactionId": "not-ours", "status": "delivered"}
    assert (await client.post("/dlr/panelsms", json=stranger)).status_code == 200
    assert drain() == 1
    assert value("smsq_dlr_unmatched_total", adapter="panelsms") - unmatched == 1


async def test_metrics_show_the_backlog_of_reports_not_applied_yet(
    app: FastAPI, client: httpx.AsyncClient, make_message: Callable[..., Message]
) -> None:
    applier = report_applier(app)
    body = {"transactionId": make_message(status=S.SENT).id, "status": "delivered"}
    assert (await client.post("/dlr/panelsms", json=body)).status_code == 200
    applier.observe_backlog()  # what the app's applier does every few seconds
    text = (await client.get("/metrics")).text
    assert "smsq_dlr_backlog 1.0" in text and "smsq_dlr_backlog_age_seconds" in text
    applier.drain()
    assert "smsq_dlr_backlog 0.0" in (await client.get("/metrics")).text


def test_a_recorded_report_tells_the_provider_and_when_it_was_sent(
    session: Session, make_message: Callable[..., Message]
) -> None:
    sent_at = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    message = make_message(status=S.SENT, sent_at=sent_at)
    report = DeliveryReport(
        adapter="panelsms", status=S.DELIVERED, raw_status="delivered", message_id=message.id
    )
    result = record_report(session, report, raw={})
    assert result.provider == "panel" and result.sent_at == sent_at
    assert result.changed and result.status is S.DELIVERED


CHILD = """
from producer.http.metrics import DELIVERY_REPORTS
DELIVERY_REPORTS.labels(provider="panel", status="delivered").inc({n})
"""


async def test_several_api_processes_are_summed_in_multiprocess_mode(
    client: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "prometheus"  # not tmp_path: the SQLite test database is a .db there
    directory.mkdir()
    env = {"PATH": "/usr/bin:/bin", metrics.MULTIPROC_ENV: str(directory)}
    for n in (2, 5):  # two uvicorn workers, each with its own memory
        subprocess.run([sys.executable, "-c", CHILD.format(n=n)], env=env, check=True)
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(directory))
    found = scraped((await client.get("/metrics")).text)
    assert found["smsq_delivery_reports_total{provider=panel,status=delivered}"] == 7


def test_lag_is_not_observed_for_a_report_without_a_send_time() -> None:
    labels: dict[str, Any] = {"provider": "brand", "status": "delivered"}
    before = value("smsq_dlr_lag_seconds_count", **labels)
    overtook = metrics.ReportResult(
        matched=True, changed=True, message_id="m", status=S.DELIVERED, provider="brand"
    )
    metrics.observe_report("brand", overtook)  # the report overtook the worker's 'sent'
    assert value("smsq_dlr_lag_seconds_count", **labels) == before
    assert value("smsq_delivery_reports_total", **labels) >= 1
