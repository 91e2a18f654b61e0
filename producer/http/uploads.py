"""CSV uploads (``multipart/form-data``): the campaign upload and the stop-list import.

One reading of the form for both: the ``file`` part is required, every other
part must be one of the endpoint's text fields (a typo is a 422 naming it,
not silently ignored), and a text field sent as a file is refused. FastAPI's
``UploadFile`` spools the file to disk past 1 MiB, so it is never held in
memory; the routes stream it with ``producer.csv_rows.iter_file_chunks``.
"""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import FormData, UploadFile

from producer.errors import InvalidField
from producer.http.request_shape import JSON, MULTIPART, media_type

__all__ = ["JSON", "MULTIPART", "csv_upload", "request_media_type"]


def request_media_type(request: Request) -> str | None:
    return media_type(request.scope["headers"])


def csv_upload(form: FormData, fields: tuple[str, ...]) -> tuple[UploadFile, dict[str, str | None]]:
    """The uploaded file and the values of ``fields`` (None when absent)."""
    for key in form:
        if key != "file" and key not in fields:
            raise InvalidField(key, f"unknown form field (known: file, {', '.join(fields)})")
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidField("file", "a CSV file is required in the form field 'file'")
    values: dict[str, str | None] = {}
    for key in fields:
        value = form.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidField(key, "must be a form field, not a file")
        values[key] = value
    return upload, values
