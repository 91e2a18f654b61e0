"""The delivery-report receiver: ``GET /dlr/brand`` and ``POST /dlr/panelsms``.

Both speak the vendor's format (shared providers README), check the report,
and append it to the report stream in Redis (:mod:`producer.report_stream`),
batched with the reports of concurrent requests (one pipeline per batch:
:mod:`producer.http.request_coalescing`). The answer is 2xx once Redis has
it; the API's report applier (:mod:`producer.report_applier`, a thread of
every API process) applies it to the database
(:func:`models.ledger.reports.record_reports`) moments later, in batches,
and keeps it until the database takes it. So the request path never waits
for PostgreSQL, and a database outage loses no report.

Answers:

- A report Redis took gets 2xx, whether or not it will match a message: a
  provider retries anything else, and retrying an unknown id cannot help.
  When applied, unmatched reports are counted
  (``smsq_dlr_unmatched_total{adapter}``) and logged; a report that finished
  its message is counted by provider and status, and its lag from the send
  to its arrival observed (``smsq_dlr_lag_seconds``; :mod:`producer.http.metrics`).
- Redis unreachable (or not answering within ``deps.REDIS_TIMEOUT``): 503
  with ``Retry-After``, so the provider sends the report again later.
- brand: a missing or wrong ``key`` is 403 ``Forbidden`` (the vendor's own
  example), checked before anything else. The key is compared in constant
  time with the ``callback_key`` of every brand account; accounts without
  one are skipped, so **with no callback key configured every brand report
  is refused**. A report only matches messages of the accounts whose key it
  carried. A missing ``smsID``/``statusID`` is 422 naming the field.
- panelsms has no callback authentication in the vendor's API: keep the URL
  unguessable or reachable from the provider's network only. A body that is
  not a JSON object is 400; a missing ``transactionId``/``status`` is 422
  naming the field. It only matches messages of panelsms accounts.

Errors are JSON ``{"detail": "..."}``. The callback key is never logged nor
stored (the queued and stored payload is the query without ``key``).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

import redis
import structlog
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from models.ledger.reports import ReportToRecord
from producer.http.deps import REDIS_TIMEOUT, Database, app_redis
from producer.http.request_coalescing import GroupCommit
from producer.report_applier import BLOCK as APPLIER_READ_BLOCK
from producer.report_applier import ReportApplier, ReportApplierThread
from producer.report_stream import append_reports
from providers.brand.account import BrandAccount
from providers.brand.protocol import CallbackField
from providers.brand.reports import parse_report as parse_brand_report
from providers.panelsms.account import PanelSmsAccount
from providers.panelsms.reports import parse_report as parse_panelsms_report
from providers.report_parsing import ReportError
from smsq.core.settings import Settings

router = APIRouter(prefix="/dlr", tags=["delivery reports"])
log = structlog.get_logger("smsq.dlr")

BRAND_KEY_PARAM = CallbackField.KEY


# Seconds a provider is asked to wait before sending a report again when Redis is away.
RETRY_AFTER = 5

ReportBatcher = GroupCommit[ReportToRecord, str]


def report_batcher(app: FastAPI) -> ReportBatcher:
    """The app's batcher of stream appends, made on first use (the Redis client is lazy too)."""
    batcher: ReportBatcher | None = getattr(app.state, "report_batcher", None)
    if batcher is None:

        def append(items: list[ReportToRecord]) -> list[str | Exception]:
            return list(append_reports(app_redis(app), items))

        batcher = app.state.report_batcher = GroupCommit(append)
    return batcher


# The routes take the request and nothing else: solving FastAPI dependencies
# cost about a quarter of the receiver's CPU per report (measured in-process:
# 0.31-0.35 ms against 0.40-0.51 ms with them and the router matched last).


async def queue_report(request: Request, item: ReportToRecord) -> Response | None:
    """Hand the report to Redis; None once it has it, else the 503 to answer."""
    try:
        await report_batcher(request.app).submit(item)
    except redis.RedisError as exc:
        log.warning(
            "dlr.queue_unavailable",
            adapter=item.report.adapter,
            error=f"{type(exc).__name__}: {exc}",
            retry_after=RETRY_AFTER,
        )
        return JSONResponse(
            {"detail": "delivery reports cannot be queued now (Redis unavailable); retry later"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER)},
        )
    return None


@router.get("/brand", response_class=PlainTextResponse)
async def brand_report(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    params = dict(request.query_params)
    accounts = brand_accounts_for_key(settings, params.get(BRAND_KEY_PARAM))
    sms_id = params.get("smsID")
    if not accounts:
        log.warning("dlr.forbidden", adapter="brand", sms_id=sms_id, client=_client(request))
        return PlainTextResponse("Forbidden", status_code=403)
    try:
        report = parse_brand_report(params)
    except ReportError as exc:
        log.warning("dlr.invalid", adapter="brand", sms_id=sms_id, problem=str(exc))
        return _invalid(exc)
    raw = {name: value for name, value in params.items() if name != BRAND_KEY_PARAM}
    refused = await queue_report(request, ReportToRecord(report, raw, accounts))
    return refused or PlainTextResponse("OK")


async def json_object_body(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, else 400 naming the problem."""
    body = await request.body()
    if not body.strip():
        raise HTTPException(400, "body is empty; expected a JSON object")
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except ValueError as exc:
        raise HTTPException(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise HTTPException(400, f"body must be a JSON object, not {_json_type(data)}")
    return data


@router.post("/panelsms")
async def panelsms_report(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    body = await json_object_body(request)
    tid = body.get("transactionId")
    try:
        report = parse_panelsms_report(body)
    except ReportError as exc:
        log.warning("dlr.invalid", adapter="panelsms", transaction_id=tid, problem=str(exc))
        return _invalid(exc)
    accounts = [n for n, a in settings.providers.items() if isinstance(a, PanelSmsAccount)]
    refused = await queue_report(request, ReportToRecord(report, body, accounts))
    return refused or JSONResponse({"success": True})


def brand_accounts_for_key(settings: Settings, key: str | None) -> list[str]:
    """Names of the brand accounts whose callback key is ``key`` (constant time)."""
    if not key:
        return []
    given = key.encode()
    names = []
    for name, account in settings.providers.items():
        if not isinstance(account, BrandAccount) or account.callback_key is None:
            continue
        expected = account.callback_key.get_secret_value().encode()
        # Every configured key is compared, so timing tells nothing about which.
        if hmac.compare_digest(given, expected):
            names.append(name)
    return names


def _invalid(exc: ReportError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=422)


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (and PostgreSQL refuses to store them).
    raise ValueError(f"{name} is not a JSON value")


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"


def report_applier(app: FastAPI, client: redis.Redis | None = None) -> ReportApplier:
    """An applier of the report stream on the app's database and Redis.

    Tests drain the stream with it (``report_applier(app).drain()``) instead
    of waiting for the app's applier thread, which only its lifespan starts.
    """
    database: Database = app.state.database
    return ReportApplier(client or app_redis(app), database.session_factory)


def start_report_applier(app: FastAPI) -> Callable[[], None]:
    """Run the app's report applier in a thread (its lifespan); the function that stops it.

    Its Redis client is its own: a read waits up to ``report_applier.BLOCK``
    for new reports, longer than the request path's timeout.
    """
    settings: Settings = app.state.settings
    client = redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=REDIS_TIMEOUT,
        socket_timeout=APPLIER_READ_BLOCK + REDIS_TIMEOUT,
    )
    thread = ReportApplierThread(report_applier(app, client)).start()

    def stop() -> None:
        thread.stop()
        client.close()

    return stop
