"""The delivery-report receiver: ``GET /dlr/brand`` and ``POST /dlr/panelsms``.

Both speak the vendor's format (shared providers README) and hand the parsed
report to the app's group commit (:mod:`producer.http.request_coalescing`), which
records it (:func:`models.ledger.reports.record_reports`) together
with the reports arriving at the same time, in one commit, before answering.

Answers:

- A report we recorded, or one for a message we do not know, gets 2xx: a
  provider retries anything else, and retrying an unknown id cannot help.
  Unmatched reports are counted (``smsq_dlr_unmatched_total{adapter}``) and
  logged. A report that finished its message is counted by provider and
  status, and its lag since the send observed (``smsq_dlr_lag_seconds``;
  :mod:`producer.http.metrics`).
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
stored (the event payload is the query without ``key``).
"""

from __future__ import annotations

import hmac
import json
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from models.ledger.reports import ReportResult, ReportToRecord, record_reports
from producer.http.deps import AppSettings, get_database
from producer.http.metrics import observe_report
from producer.http.request_coalescing import GroupCommit
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


ReportBatcher = GroupCommit[ReportToRecord, ReportResult]


async def report_batcher(request: Request) -> ReportBatcher:
    """The app's group commit of reports, made on first use (the database is lazy too)."""
    state = request.app.state
    batcher: ReportBatcher | None = getattr(state, "report_batcher", None)
    if batcher is None:
        sessions = get_database(request).session_factory

        def write(items: list[ReportToRecord]) -> list[ReportResult | Exception]:
            with sessions() as session:
                return record_reports(session, items)

        batcher = state.report_batcher = GroupCommit(write)
    return batcher


Batcher = Annotated[ReportBatcher, Depends(report_batcher)]


@router.get("/brand", response_class=PlainTextResponse)
async def brand_report(request: Request, batcher: Batcher, settings: AppSettings) -> Response:
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
    result = await batcher.submit(ReportToRecord(report, raw, accounts))
    observe_report("brand", result)
    _log_result(
        "brand",
        result.matched,
        result.changed,
        sms_id=sms_id,
        message_id=result.message_id,
        provider=result.provider,
        report_status=report.raw_status,
        status=result.status,
    )
    return PlainTextResponse("OK")


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
async def panelsms_report(
    body: Annotated[dict[str, Any], Depends(json_object_body)],
    batcher: Batcher,
    settings: AppSettings,
) -> Response:
    tid = body.get("transactionId")
    try:
        report = parse_panelsms_report(body)
    except ReportError as exc:
        log.warning("dlr.invalid", adapter="panelsms", transaction_id=tid, problem=str(exc))
        return _invalid(exc)
    accounts = [n for n, a in settings.providers.items() if isinstance(a, PanelSmsAccount)]
    result = await batcher.submit(ReportToRecord(report, body, accounts))
    observe_report("panelsms", result)
    _log_result(
        "panelsms",
        result.matched,
        result.changed,
        transaction_id=report.message_id,
        provider=result.provider,
        report_status=report.raw_status,
        status=result.status,
    )
    return JSONResponse({"success": True})


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


def _log_result(adapter: str, matched: bool, changed: bool, **fields: Any) -> None:
    if not matched:
        log.warning("dlr.unmatched", adapter=adapter, **fields)
    else:
        log.info("dlr.recorded", adapter=adapter, changed=changed, **fields)


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
