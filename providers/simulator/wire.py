"""The simulator's plain data: a request in, a response out, a report owed.

These carry no I/O so the core can be driven by an ASGI app, by an
``httpx.MockTransport`` or directly by a test, with the same behaviour. The
vendors' answers come from their ``protocol`` modules as a neutral
:class:`~providers.wire.WireAnswer`, wrapped here by :func:`from_answer`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from providers.codes import Rejection
from providers.wire import Query, WireAnswer, json_answer, text_answer
from providers.wire import request_params as read_params

__all__ = ["Query", "Rejection", "Report", "SimRequest", "SimResponse", "request_params"]


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
    to: str = ""  # the destination, digits only: what the stats count reports by


def request_params(req: SimRequest) -> dict[str, str]:
    """The vendor parameters of ``req``, read as the vendors' PHP endpoints do."""
    return read_params(req.query, req.header("content-type"), req.body)


def from_answer(answer: WireAnswer) -> SimResponse:
    """A vendor's answer (from its ``protocol`` module) as the simulator's response."""
    return SimResponse(answer.status, dict(answer.headers), answer.body)


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> SimResponse:
    return from_answer(json_answer(status, data, headers))


def text_response(status: int, text: str, headers: dict[str, str] | None = None) -> SimResponse:
    return from_answer(text_answer(status, text, headers))
