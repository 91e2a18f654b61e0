"""The shape a request may have (its rate is :mod:`producer.http.request_rate`):
body size (413), content type (415), no NUL in the URL (400).

An ASGI middleware, so a chunked body is counted while it streams and a huge
upload is cut off without being held in memory:

- a body larger than ``SMSQ_MAX_BODY_BYTES`` is 413 ``body_too_large``;
  a ``multipart/form-data`` upload to an upload path (``/v1/campaigns``,
  ``/v1/stoplist/import``) may be up to ``SMSQ_MAX_UPLOAD_BYTES`` instead.
  A ``Content-Length`` over the limit is refused before anything is read; a
  body without one (chunked) is counted and refused when it passes the limit.
- a POST/PUT/PATCH with a body whose content type is not accepted on that
  path is 415 ``unsupported_media_type`` naming what is: ``application/json``
  under ``/v1/`` (plus ``multipart/form-data`` on the upload paths), and the
  vendor's form encodings on the drop-in ``/sendMtSms.php``. A request
  without a body needs no content type.

``/dlr/*`` speaks the providers' formats and is left alone except for the
size limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from producer.http.errors import error_response
from smsq.core.settings import Settings

JSON = "application/json"
MULTIPART = "multipart/form-data"
FORM = "application/x-www-form-urlencoded"

UPLOAD_PATHS = frozenset({"/v1/campaigns", "/v1/stoplist/import"})
DROPIN_PATH = "/sendMtSms.php"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes its limit.

    An HTTPException, so FastAPI's body parsing re-raises it as is (any other
    error while reading a body becomes a 400) and the error handlers answer
    413 in the usual shape.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is larger than {limit} bytes")
        self.limit = limit


@dataclass(frozen=True)
class Rule:
    accepted: tuple[str, ...]  # empty: any content type
    limit: int


def rule_for(settings: Settings, path: str, content_type: str) -> Rule:
    """What a request to ``path`` may send (content types and size)."""
    path = path.rstrip("/") or "/"
    if path == DROPIN_PATH:
        return Rule((FORM, MULTIPART, JSON), settings.max_body_bytes)
    if path.startswith("/v1/") or path == "/v1":
        if path in UPLOAD_PATHS:
            limit = (
                settings.max_upload_bytes if content_type == MULTIPART else settings.max_body_bytes
            )
            return Rule((JSON, MULTIPART), limit)
        return Rule((JSON,), settings.max_body_bytes)
    return Rule((), settings.max_body_bytes)


def media_type(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"content-type":
            return value.decode("latin-1").split(";", 1)[0].strip().lower()
    return None


def content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    length = content_length(headers)
    if length is not None:
        return length > 0
    return any(name == b"transfer-encoding" for name, _ in headers)


class RequestLimits:
    """ASGI middleware applying :func:`rule_for` to every HTTP request."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"%00" in scope["query_string"].lower():
            # No parameter of ours may hold one, and PostgreSQL refuses it.
            answer = error_response(400, "bad_request", "the URL contains a NUL character (%00)")
            await answer(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        ctype = media_type(headers)
        rule = rule_for(self.settings, scope["path"], ctype or "")
        if (
            scope["method"] in _BODY_METHODS
            and rule.accepted
            and ctype not in rule.accepted
            and (ctype is not None or has_body(headers))
        ):
            answer = error_response(
                415,
                "unsupported_media_type",
                f"send {' or '.join(rule.accepted)}" + (f", not {ctype}" if ctype else ""),
                field="Content-Type",
            )
            await answer(scope, receive, send)
            return
        length = content_length(headers)
        if length is not None and length > rule.limit:
            await _too_large(rule.limit)(scope, receive, send)
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > rule.limit:
                    raise BodyTooLarge(rule.limit)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge as exc:
            # Raised where nothing turned it into an answer (a middleware
            # reading the body); answer it here if no answer has started.
            if started:
                raise
            await _too_large(exc.limit)(scope, receive, send)


def _too_large(limit: int) -> JSONResponse:
    return error_response(413, "body_too_large", f"the body is larger than {limit} bytes")
