"""The simulator's plain data: a request in, a response out, a report owed.

These carry no I/O so the core can be driven by an ASGI app, by an
``httpx.MockTransport`` or directly by a test, with the same behaviour.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl

Query = Mapping[str, str] | Sequence[tuple[str, str]]

JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain; charset=utf-8"
XML_TYPE = "application/xml; charset=utf-8"


@dataclass(frozen=True, slots=True)
class SimRequest:
    """One HTTP request, already split into parts.

    ``query`` is a mapping or the (name, value) pairs in order; a repeated
    name keeps its last value, as PHP does. ``headers`` is any mapping; a
    case-insensitive one (httpx, Starlette) or lower-case keys.
    """

    method: str
    path: str
    query: Query = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        if value is None:
            lowered = name.lower()
            value = next((v for k, v in self.headers.items() if k.lower() == lowered), None)
        return value


@dataclass(slots=True)
class SimResponse:
    """What to answer, and when: after ``delay`` seconds, or never (``hang``)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0
    hang: bool = False

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class Report:
    """A delivery report the simulator owes: send ``payload`` to ``url``.

    ``method`` POST sends the payload as a JSON body (panelsms), GET as query
    parameters added to the URL's own (brand).
    """

    url: str
    method: Literal["POST", "GET"]
    payload: dict[str, Any]
    due: float
    api: Literal["panelsms", "brand"]


class Rejection(Exception):
    """A request the vendor would answer with an error ``code``."""

    def __init__(self, code: int, detail: str | None = None) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


def request_params(req: SimRequest) -> dict[str, str]:
    """The vendor parameters: query string, then a form or JSON body over it.

    Like PHP's ``$_REQUEST`` the body wins over the query string. A JSON body
    that is not an object is invalid message data (code 8).
    """
    params = dict(req.query)
    if not req.body:
        return params
    content_type = (req.header("content-type") or "").lower()
    is_json = "json" in content_type or (
        "form" not in content_type and req.body.lstrip()[:1] == b"{"
    )
    if is_json:
        try:
            data = json.loads(req.body)
        except ValueError:
            raise Rejection(8, "the JSON body cannot be parsed") from None
        if not isinstance(data, dict):
            raise Rejection(8, "the JSON body must be an object")
        params.update({str(k): _scalar(v) for k, v in data.items() if v is not None})
    else:
        try:
            text = req.body.decode("utf-8")
        except UnicodeDecodeError:
            raise Rejection(8, "the form body is not UTF-8") from None
        params.update(parse_qsl(text, keep_blank_values=True))
    return params


def _scalar(value: Any) -> str:
    # JSON true must read as the vendor's "true", not Python's "True".
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> SimResponse:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return SimResponse(status, {"content-type": JSON_TYPE, **(headers or {})}, body)


def text_response(status: int, text: str, headers: dict[str, str] | None = None) -> SimResponse:
    return SimResponse(status, {"content-type": TEXT_TYPE, **(headers or {})}, text.encode())
