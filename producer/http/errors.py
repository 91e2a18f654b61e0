"""One shape for every error answer of the HTTP API.

::

    {"error": {"code": "<machine_code>", "message": "<human text>", "field": "<name or null>"}}

``code`` is stable (clients branch on it); ``message`` is for people and may
change; ``field`` names the input at fault (``to``, ``to[3]``,
``Idempotency-Key``) or is null.

Routes raise :class:`ApiError`; :func:`install` also turns the producer's
:class:`~producer.errors.InvalidField`, FastAPI's validation errors and
Starlette's own HTTP errors (404, 405, ...) into this shape, the database
being away (:class:`~producer.errors.Unavailable`, or the driver's connection
errors from a route's own queries) into a 503 ``unavailable`` with
``Retry-After`` (logged as a warning, without a traceback: an outage must not
flood the log), and any other exception into a 500 ``internal_error``
without a traceback (it is logged).

The delivery-report receiver (``/dlr/*``) keeps the vendors' own answers and
the drop-in ``/sendMtSms.php`` answers in panelsms' format; neither raises
these errors.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.db import UNAVAILABLE_ERRORS
from producer.errors import InvalidField, Unavailable

log = structlog.get_logger("smsq.http")

# Paths that keep FastAPI's ``{"detail": ...}`` for their HTTP errors: the
# delivery-report receiver documents that shape to the providers.
OWN_FORMAT_PREFIXES = ("/dlr/",)

# Codes for Starlette's own HTTP errors (raised by routing, or HTTPException).
_CODE_FOR_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_field",
    429: "rate_limited",
}


class ApiError(Exception):
    """An answer other than success; handled into the JSON error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, field), status_code=status, headers=headers)


# Pydantic puts the member of a union it tried into the location
# (``("to", "list[str]", 3)``, ``("item", "SendMessage", "to")``); those are
# not field names.
_UNION_TAG = re.compile(r"[A-Z].*|.*[\[\-].*|str|int|float|bool|bytes|none|list|dict")


def field_path(loc: Sequence[int | str]) -> str | None:
    """FastAPI's error location as a field name: ``("body", "to", 3)`` -> ``to[3]``."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie", "form"):
        parts = parts[1:]
    parts = parts[:1] + [p for p in parts[1:] if isinstance(p, int) or not _UNION_TAG.fullmatch(p)]
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name or None


def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, field=exc.field, headers=exc.headers)


def _invalid_field(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidField)
    return error_response(422, "invalid_field", exc.reason, field=exc.field)


def _validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if not errors:
        return error_response(422, "invalid_field", "the request is not valid")
    # With a union, each member tried is an error; the deepest one is the
    # useful one ("to[3]" rather than "to is not a string").
    top = tuple(errors[0].get("loc", ()))[:2]
    same_field = [e for e in errors if tuple(e.get("loc", ()))[:2] == top]
    first = max(same_field, key=lambda e: len(e.get("loc", ())))
    field = field_path(first.get("loc", ()))
    message = str(first.get("msg", "invalid value"))
    if first.get("type") == "json_invalid":
        return error_response(422, "invalid_field", f"the body is not valid JSON: {message}")
    if field is None and first.get("type") == "missing":
        message = "a JSON body is required"
    return error_response(422, "invalid_field", message, field=field)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if request.url.path.startswith(OWN_FORMAT_PREFIXES):
        return await http_exception_handler(request, exc)
    code = _CODE_FOR_STATUS.get(exc.status_code, "http_error")
    detail = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and detail == "Not Found":
        detail = "no such resource"
    elif exc.status_code == 405:
        detail = "this method is not allowed here"
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, detail, headers=headers)


def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.error(
        "http.internal_error",
        method=request.method,
        path=request.url.path,
        error=type(exc).__name__,
        exc_info=exc,
    )
    return error_response(500, "internal_error", "an internal error occurred; it was logged")


def unavailable_response(exc: Unavailable) -> JSONResponse:
    return error_response(
        503, "unavailable", str(exc), headers={"Retry-After": str(exc.retry_after)}
    )


def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, Unavailable):
        exc = Unavailable("database")
    log.warning(
        "http.unavailable",
        method=request.method,
        path=request.url.path,
        service=exc.service,
        error=type(exc.__cause__ or exc).__name__,
    )
    return unavailable_response(exc)


def install(app: FastAPI) -> None:
    """Register the handlers that give every error its JSON shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(InvalidField, _invalid_field)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    unavailable: tuple[type[Exception], ...] = (Unavailable, *UNAVAILABLE_ERRORS)
    for error in unavailable:
        app.add_exception_handler(error, _unavailable)
    app.add_exception_handler(Exception, _internal)
