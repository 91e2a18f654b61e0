"""``/v1/stoplist``: the numbers that get no campaign or marketing SMS.

Thin routes over :mod:`producer.stoplist` (the command line uses the same
functions). Numbers are normalized to E.164, so ``+49 170 1234567`` and
``0049 170 1234567`` are one entry. Adding is idempotent (an entry keeps its
first reason and date); values that are not phone numbers are reported by
position, not refused as a whole. Like campaigns, the stop list is shared by
every API key of the deployment.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from producer import stoplist
from producer.csv_rows import iter_file_chunks
from producer.http.auth import CurrentClient
from producer.http.deps import DbSession, get_database
from producer.http.errors import ApiError
from producer.http.schemas import (
    AddToStoplist,
    RejectedRowOut,
    StoplistChanged,
    StoplistEntry,
    StoplistPage,
    error_responses,
)
from producer.http.uploads import MULTIPART, csv_upload, request_media_type

router = APIRouter(prefix="/v1/stoplist", tags=["stop list"])

IMPORT_FIELDS = ("column", "reason")


def _changed(result: stoplist.StoplistResult) -> StoplistChanged:
    return StoplistChanged(
        added=result.added,
        already=result.already,
        rejected=result.rejected,
        errors=[RejectedRowOut.model_validate(row) for row in result.errors],
    )


@router.post(
    "",
    response_model=StoplistChanged,
    responses=error_responses(413, 415, 422),
    summary="Add numbers to the stop list",
)
def add_numbers(body: AddToStoplist, client: CurrentClient, session: DbSession) -> StoplistChanged:
    """``errors`` lists the values that are not phone numbers (``row`` is the
    1-based position in ``numbers``); the others are added."""
    return _changed(stoplist.add_numbers(session, body.numbers, body.reason))


@router.get(
    "",
    response_model=StoplistPage,
    responses=error_responses(422),
    summary="List the stop list, a page at a time",
)
def list_numbers(
    client: CurrentClient,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=stoplist.LIST_LIMIT_MAX)] = 100,
    after: Annotated[str | None, Query(description="the `next` of the previous page")] = None,
) -> StoplistPage:
    """Entries in number order. ``next`` is null once a page comes back short
    (a full last page is followed by an empty one)."""
    entries = stoplist.list_numbers(session, limit=limit, after=after)
    return StoplistPage(
        items=[
            StoplistEntry(number=e.number, reason=e.reason, created_at=e.created_at)
            for e in entries
        ],
        next=entries[-1].number if len(entries) == limit else None,
    )


@router.delete(
    "/{number}",
    status_code=204,
    response_class=Response,
    responses=error_responses(404, 422),
    summary="Take a number off the stop list",
)
def remove_number(number: str, client: CurrentClient, session: DbSession) -> Response:
    """204 when it was listed, 404 when it was not. Write the ``+`` as ``%2B``
    or leave it out with a leading ``00``."""
    if not stoplist.remove_number(session, number):
        raise ApiError(404, "not_found", "this number is not on the stop list", field="number")
    return Response(status_code=204)


@router.post(
    "/import",
    response_model=StoplistChanged,
    responses=error_responses(413, 415, 422),
    summary="Add the numbers of a CSV file",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                MULTIPART: {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "column": {"type": "string", "default": "phone"},
                            "reason": {"type": "string", "default": ""},
                        },
                    }
                }
            },
        }
    },
)
async def import_numbers(request: Request, client: CurrentClient) -> StoplistChanged:
    """A CSV with a header row; the numbers are in ``column`` (default
    ``phone``). Streamed like a campaign upload; broken rows are reported
    with their row number (header not counted)."""
    if request_media_type(request) != MULTIPART:
        raise ApiError(415, "unsupported_media_type", f"send {MULTIPART} with a CSV file")
    async with request.form(max_files=1, max_fields=len(IMPORT_FIELDS)) as form:
        upload, column, reason = _import_form(form)
        database = get_database(request)

        def run() -> stoplist.StoplistResult:
            with database.session_factory() as session:
                return stoplist.import_csv(
                    session, iter_file_chunks(upload.file), column=column, reason=reason
                )

        result = await run_in_threadpool(run)
    return _changed(result)


def _import_form(form: FormData) -> tuple[UploadFile, str, str]:
    upload, fields = csv_upload(form, IMPORT_FIELDS)
    return upload, (fields["column"] or "").strip() or "phone", fields["reason"] or ""
