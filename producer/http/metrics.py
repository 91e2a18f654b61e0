"""Prometheus metrics of the HTTP API, and its ``GET /metrics``.

The metric objects are in the process's default registry. ``/metrics``
serves that registry, or, when ``PROMETHEUS_MULTIPROC_DIR`` is set (uvicorn
with several ``--workers``, or the API next to a prefork worker), the sum of
every process's files in that directory. Labels are low-cardinality by rule:
``provider``, ``status``, ``adapter``, and for requests the route *template*
(``/v1/messages/{message_id}``), never a raw path, id or key.

``/metrics`` needs no API key (Prometheus scrapes it); it holds counts only.
Keep it reachable from the monitoring network only, as the delivery-report
URLs.

Requests are measured by :class:`RequestMetrics`, an ASGI middleware the
app adds; delivery reports when they are applied to the database, by the
report applier (:mod:`producer.report_applier`) through :func:`observe_report`,
which also keeps the backlog of reports received but not applied yet
(:func:`observe_backlog`: every API process runs an applier and reads the
same stream, so the most recent value of any live process is the answer).
"""

from __future__ import annotations

import datetime as dt
import os
import time

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.ledger.reports import ReportResult

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

DLR_UNMATCHED = Counter(
    "smsq_dlr_unmatched",  # exported as smsq_dlr_unmatched_total
    "Delivery reports answered 2xx that matched no message",
    ["adapter"],
)
DELIVERY_REPORTS = Counter(
    "smsq_delivery_reports",  # exported as smsq_delivery_reports_total
    "Delivery reports that matched a message and moved its status, "
    "by provider account and the status it moved to",
    ["provider", "status"],
)
DLR_LAG = Histogram(
    "smsq_dlr_lag_seconds",
    "From the worker's send to the delivery report that finished the message "
    "(first report of a final status only; duplicates are not observed)",
    ["provider", "status"],
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600),
)
DLR_BACKLOG = Gauge(
    "smsq_dlr_backlog",
    "Delivery reports received (answered 2xx) and waiting in Redis to be applied",
    multiprocess_mode="livemostrecent",
)
DLR_BACKLOG_AGE = Gauge(
    "smsq_dlr_backlog_age_seconds",
    "Age of the oldest delivery report waiting to be applied (0: none waits)",
    multiprocess_mode="livemostrecent",
)
HTTP_REQUESTS = Counter(
    "smsq_http_requests",  # exported as smsq_http_requests_total
    "Requests answered by the API, by route template, method and status code",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "smsq_http_request_seconds",
    "Time to answer a request, by route template",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# Final statuses a delivery report can bring (models.status); lag is observed for these.
_REPORTED_FINAL = frozenset({"delivered", "undelivered", "failed", "expired"})
UNMATCHED_ROUTE = "unmatched"  # a path no route serves: one label, not the path itself


def observe_report(adapter: str, result: ReportResult, *, now: dt.datetime | None = None) -> None:
    """Count one recorded report; observe the send→report lag when it finished the message."""
    if not result.matched:
        DLR_UNMATCHED.labels(adapter=adapter).inc()
        return
    if not result.changed or result.status is None:
        return  # a duplicate or late report: the first one was counted
    provider = result.provider or ""
    status = result.status.value
    DELIVERY_REPORTS.labels(provider=provider, status=status).inc()
    if status in _REPORTED_FINAL and result.sent_at is not None:
        sent_at = result.sent_at
        if sent_at.tzinfo is None:
            sent_at = sent_at.replace(tzinfo=dt.UTC)
        lag = ((now or dt.datetime.now(dt.UTC)) - sent_at).total_seconds()
        DLR_LAG.labels(provider=provider, status=status).observe(max(0.0, lag))


def observe_backlog(depth: int, oldest_age: float) -> None:
    """Reports waiting in the stream, and the age in seconds of the oldest (0 when none)."""
    DLR_BACKLOG.set(depth)
    DLR_BACKLOG_AGE.set(oldest_age if depth else 0.0)


def exposition_registry() -> CollectorRegistry:
    """What ``/metrics`` serves: every process's values in multiprocess mode, else ours."""
    if not os.environ.get(MULTIPROC_ENV):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    # A plain def: FastAPI runs it in a thread, so reading the multiprocess
    # files never blocks the event loop.
    return Response(generate_latest(exposition_registry()), media_type=CONTENT_TYPE_LATEST)


class RequestMetrics:
    """ASGI middleware: count and time every HTTP request by its route template.

    The template is read after routing (Starlette puts the matched route in
    the scope), so ``/v1/messages/0192…`` is counted as
    ``/v1/messages/{message_id}``; a path no route matched is ``unmatched``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before the answer started is a 500 for the client

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = _route_template(scope)
            HTTP_REQUESTS.labels(route=route, method=scope["method"], status=str(status)).inc()
            HTTP_LATENCY.labels(route=route).observe(time.perf_counter() - started)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE
