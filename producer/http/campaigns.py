"""``/v1/campaigns``: submit (JSON or a CSV upload), watch, control, report.

**Ownership.** Campaigns have no client column: any valid API key may read
and control any campaign. smsq is deployed for one organisation (its keys
are its own services), so this is the intended sharing, not an oversight; a
multi-tenant deployment would need a ``client_id`` on campaigns first.

**Uploads are streamed.** ``multipart/form-data`` with a ``file`` part:
Starlette spools the part to a temporary file on disk past 1 MB (the size is
capped by ``SMSQ_MAX_UPLOAD_BYTES`` in :mod:`producer.http.request_shape` while it
arrives), and the ingestion reads it back in 64 KiB chunks through
:func:`producer.csv_rows.read_csv_rows`, so a million-row list never sits in
memory. Ingestion blocks (database, broker), so it runs in the threadpool.

**The report** (``report.csv``) is generated while it is sent, a thousand
rows per database round trip, with its own session that lives as long as the
response.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from sqlalchemy import select
from starlette.datastructures import FormData

from models.status import CampaignStatus
from models.tables import Campaign
from producer.api import Producer
from producer.campaign_control import ControlResult
from producer.campaign_views import (
    REPORT_COLUMNS,
    campaign_summary,
    list_campaigns,
    report_rows,
)
from producer.csv_rows import iter_file_chunks, read_csv_rows
from producer.errors import InvalidField
from producer.http.auth import CurrentClient
from producer.http.deps import Database, DbSession, ProducerDep, get_database
from producer.http.errors import ApiError
from producer.http.schemas import (
    CampaignAccepted,
    CampaignControlled,
    CampaignListItem,
    CampaignOut,
    CreateCampaign,
    error_responses,
)
from producer.http.uploads import JSON, MULTIPART, csv_upload, request_media_type
from producer.receipts import CampaignReceipt

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])

# The form fields of an upload besides ``file``; any other is refused (typos).
FORM_FIELDS = ("name", "text", "phone_column", "send_at", "provider", "sender")
REPORT_CHUNK_ROWS = 1000  # CSV rows per chunk of the streamed report
# Cells a spreadsheet would run as a formula; provider texts are not trusted.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

_MULTIPART_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "text", "file"],
    "properties": {
        "file": {
            "type": "string",
            "format": "binary",
            "description": "CSV, UTF-8, header row first; the other columns fill the template",
        },
        "name": {"type": "string"},
        "text": {"type": "string", "description": "a template: {column} from each row"},
        "phone_column": {"type": "string", "default": "phone"},
        "send_at": {"type": "string"},
        "provider": {"type": "string"},
        "sender": {"type": "string"},
    },
}


@router.post(
    "",
    status_code=202,
    response_model=CampaignAccepted,
    responses=error_responses(413, 415, 422),
    summary="Submit a campaign: JSON recipients or a CSV upload",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                JSON: {"schema": CreateCampaign.model_json_schema()},
                MULTIPART: {"schema": _MULTIPART_SCHEMA},
            },
        }
    },
)
async def create_campaign(
    request: Request, client: CurrentClient, producer: ProducerDep
) -> CampaignAccepted:
    """Read the recipients, store one message per accepted row, start sending.

    Rejected rows (bad number, missing template field, duplicate number, a
    broken CSV row) do not fail the request: they are counted, and the first
    100 are listed with their row number. Any valid API key may submit.
    """
    media_type = request_media_type(request)
    if media_type == MULTIPART:
        async with request.form(max_files=1, max_fields=len(FORM_FIELDS)) as form:
            receipt = await _from_upload(producer, form)
    elif media_type == JSON:
        body = _parse_json(await request.body())
        receipt = await run_in_threadpool(
            producer.submit_campaign,
            body.name,
            body.recipients,
            body.text,
            send_at=body.send_at,
            provider=body.provider,
            sender=body.sender,
            phone_field=_phone_column(body.phone_column),
        )
    else:
        raise ApiError(
            415, "unsupported_media_type", f"send {JSON}, or {MULTIPART} with a CSV file"
        )
    return CampaignAccepted.model_validate(receipt)


def _parse_json(raw: bytes) -> CreateCampaign:
    try:
        return CreateCampaign.model_validate_json(raw)
    except ValidationError as exc:
        # Through FastAPI's own error, so it gets the API's error shape.
        errors = exc.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


def _phone_column(value: str) -> str:
    if not value.strip():
        raise InvalidField("phone_column", "must name the column that holds the numbers")
    return value


async def _from_upload(producer: Producer, form: FormData) -> CampaignReceipt:
    upload, fields = csv_upload(form, FORM_FIELDS)
    name, text = fields["name"], fields["text"]
    if name is None:
        raise InvalidField("name", "is required")
    if text is None:
        raise InvalidField("text", "is required")
    phone_column = _phone_column(fields["phone_column"] or "phone")
    recipients = read_csv_rows(iter_file_chunks(upload.file), phone_column=phone_column)
    return await run_in_threadpool(
        producer.submit_campaign,
        name,
        recipients,
        text,
        send_at=fields["send_at"],
        provider=fields["provider"] or None,
        sender=fields["sender"] or None,
        phone_field=phone_column,
    )


@router.get("", response_model=list[CampaignListItem], summary="The newest campaigns")
def list_recent_campaigns(
    client: CurrentClient,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
    status: Annotated[CampaignStatus | None, Query()] = None,
) -> list[CampaignListItem]:
    """The newest campaigns first, optionally only those in one status
    (``running``, ``paused``, ...): how an operator finds an id."""
    found = list_campaigns(session, limit=limit, status=status.value if status else None)
    return [CampaignListItem.model_validate(c) for c in found]


@router.get(
    "/{campaign_id}",
    response_model=CampaignOut,
    responses=error_responses(404),
    summary="A campaign's progress",
)
def get_campaign(
    campaign_id: str, client: CurrentClient, session: DbSession, producer: ProducerDep
) -> CampaignOut:
    """Counts by status, the send rate over the last minute and the estimated
    finish. Any valid API key may read any campaign (single tenant)."""
    summary = campaign_summary(session, campaign_id, now=producer.clock())
    if summary is None:
        raise _no_campaign()
    return CampaignOut.model_validate(summary)


# --- control -------------------------------------------------------------------


def _no_campaign() -> ApiError:
    return ApiError(404, "not_found", "no campaign with this id", field="campaign_id")


def _controlled(result: ControlResult, wanted: CampaignStatus, verb: str) -> CampaignControlled:
    """200 when the campaign is (now or already) ``wanted``; else 409."""
    if result.status != wanted:
        raise ApiError(409, "invalid_state", f"a {result.status} campaign cannot be {verb}")
    return CampaignControlled(
        id=result.campaign_id,
        status=result.status,
        changed=result.changed,
        cancelled_messages=result.cancelled_messages,
    )


def _control(producer: Producer, campaign_id: str, action: str) -> ControlResult:
    actions = {
        "pause": producer.pause_campaign,
        "resume": producer.resume_campaign,
        "cancel": producer.cancel_campaign,
    }
    try:
        return actions[action](campaign_id)
    except InvalidField as exc:
        if exc.field == "campaign":
            raise _no_campaign() from None
        raise


CONTROL_RESPONSES = error_responses(404, 409)


@router.post(
    "/{campaign_id}/pause",
    response_model=CampaignControlled,
    responses=CONTROL_RESPONSES,
    summary="Pause a running campaign",
)
def pause_campaign(
    campaign_id: str, client: CurrentClient, producer: ProducerDep
) -> CampaignControlled:
    """No new sends start; batches already sending finish. Pausing a paused
    campaign is a no-op (200, ``changed: false``); anything but a running or
    paused campaign is 409."""
    return _controlled(_control(producer, campaign_id, "pause"), CampaignStatus.PAUSED, "paused")


@router.post(
    "/{campaign_id}/resume",
    response_model=CampaignControlled,
    responses=CONTROL_RESPONSES,
    summary="Resume a paused campaign",
)
def resume_campaign(
    campaign_id: str, client: CurrentClient, producer: ProducerDep
) -> CampaignControlled:
    """Running again; what is still queued is re-enqueued."""
    result = _control(producer, campaign_id, "resume")
    return _controlled(result, CampaignStatus.RUNNING, "resumed")


@router.post(
    "/{campaign_id}/cancel",
    response_model=CampaignControlled,
    responses=CONTROL_RESPONSES,
    summary="Cancel a campaign",
)
def cancel_campaign(
    campaign_id: str, client: CurrentClient, producer: ProducerDep
) -> CampaignControlled:
    """Unsent messages become ``cancelled``; sends in flight finish. A
    finished campaign cannot be cancelled (409)."""
    result = _control(producer, campaign_id, "cancel")
    return _controlled(result, CampaignStatus.CANCELLED, "cancelled")


# --- the report ------------------------------------------------------------------


@router.get(
    "/{campaign_id}/report.csv",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "one row per recipient"},
        **error_responses(404),
    },
    summary="Every recipient with its final status and error, as CSV",
)
def campaign_report(
    campaign_id: str, request: Request, client: CurrentClient, session: DbSession
) -> StreamingResponse:
    """Columns: ``to,message_id,status,error_code,error_detail,sent_at,finished_at,
    provider,route`` (times in ISO 8601 UTC; ``route`` empty without one), in
    message order. Streamed: any size works."""
    if session.scalar(select(Campaign.id).where(Campaign.id == campaign_id)) is None:
        raise _no_campaign()
    database = get_database(request)
    return StreamingResponse(
        _report_chunks(database, campaign_id),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="campaign-{campaign_id}.csv"'},
    )


def _report_chunks(database: Database, campaign_id: str) -> Iterator[bytes]:
    """The CSV, :data:`REPORT_CHUNK_ROWS` rows per chunk; its own session,
    closed when the response ends (or the client goes away)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(REPORT_COLUMNS)
    with database.session_factory() as session:
        for n, row in enumerate(report_rows(session, campaign_id), 1):
            writer.writerow(
                (
                    row.to,
                    row.message_id,
                    row.status,
                    "" if row.error_code is None else row.error_code,
                    _cell(row.error_detail),
                    _time(row.sent_at),
                    _time(row.finished_at),
                    row.provider,
                    row.route or "",
                )
            )
            if n % REPORT_CHUNK_ROWS == 0:
                yield buffer.getvalue().encode("utf-8")
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def _time(value: dt.datetime | None) -> str:
    return "" if value is None else value.isoformat().replace("+00:00", "Z")


def _cell(text: str | None) -> str:
    """Free text from a provider, made safe to open in a spreadsheet."""
    if not text:
        return ""
    return "'" + text if text.startswith(_FORMULA_START) else text
