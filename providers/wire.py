"""HTTP shapes both vendors share, as plain values.

The vendors' ``protocol`` modules render their answers as a :class:`WireAnswer`
(status, headers, body): the simulator wraps it in its ``SimResponse``, the
drop-in in a Starlette response, and neither vendor module knows either.
:func:`request_params` reads a request's parameters the way the vendors' PHP
endpoints do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from providers.codes import Code, Rejection

Query = Mapping[str, str] | Sequence[tuple[str, str]]

JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain; charset=utf-8"
XML_TYPE = "application/xml; charset=utf-8"


@dataclass(frozen=True, slots=True)
class WireAnswer:
    """An HTTP answer: what a vendor's endpoint sends back."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def json_answer(status: int, data: Any, headers: Mapping[str, str] | None = None) -> WireAnswer:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return WireAnswer(status, {"content-type": JSON_TYPE, **(headers or {})}, body)


def text_answer(status: int, text: str, headers: Mapping[str, str] | None = None) -> WireAnswer:
    return WireAnswer(status, {"content-type": TEXT_TYPE, **(headers or {})}, text.encode())


def xml_answer(status: int, xml: str, headers: Mapping[str, str] | None = None) -> WireAnswer:
    return WireAnswer(status, {"content-type": XML_TYPE, **(headers or {})}, xml.encode())


def request_params(query: Query, content_type: str | None, body: bytes) -> dict[str, str]:
    """The vendor parameters: query string, then a form or JSON body over it.

    Like PHP's ``$_REQUEST`` the body wins over the query string, and a
    repeated name keeps its last value. A JSON body that is not an object is
    invalid message data (code 8), raised as :class:`Rejection`.
    """
    params = dict(query)
    if not body:
        return params
    content_type = (content_type or "").lower()
    is_json = "json" in content_type or ("form" not in content_type and body.lstrip()[:1] == b"{")
    if is_json:
        try:
            data = json.loads(body)
        except ValueError:
            raise Rejection(Code.INVALID_MESSAGE_DATA, "the JSON body cannot be parsed") from None
        if not isinstance(data, dict):
            raise Rejection(Code.INVALID_MESSAGE_DATA, "the JSON body must be an object")
        params.update({str(k): _scalar(v) for k, v in data.items() if v is not None})
    else:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Rejection(Code.INVALID_MESSAGE_DATA, "the form body is not UTF-8") from None
        params.update(parse_qsl(text, keep_blank_values=True))
    return params


def _scalar(value: Any) -> str:
    # JSON true must read as the vendor's "true", not Python's "True".
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)
