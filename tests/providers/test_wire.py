"""Reading request parameters as the vendors' PHP endpoints do ($_REQUEST)."""

from __future__ import annotations

import pytest

from providers.codes import Code, Rejection
from providers.wire import json_answer, request_params, text_answer


def test_the_body_wins_over_the_query() -> None:
    query = [("to", "+1"), ("to", "+2"), ("user", "u")]
    assert request_params(query, None, b"") == {"to": "+2", "user": "u"}
    form = request_params(query, "application/x-www-form-urlencoded", b"to=%2B3&x=")
    assert form == {"to": "+3", "user": "u", "x": ""}
    sniffed = request_params(query, None, b' {"to": "+4", "confirmation": true, "n": 5}')
    assert sniffed == {"to": "+4", "user": "u", "confirmation": "true", "n": "5"}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b"{"),
        ("application/json", b"[1]"),
        ("application/x-www-form-urlencoded", b"\xff"),
    ],
)
def test_unreadable_bodies_are_code_8(content_type: str, body: bytes) -> None:
    with pytest.raises(Rejection) as info:
        request_params({}, content_type, body)
    assert info.value.code == Code.INVALID_MESSAGE_DATA


def test_answers() -> None:
    assert json_answer(200, {"a": "é"}).body == '{"a":"é"}'.encode()
    assert text_answer(404, "x", {"allow": "GET"}).headers == {
        "content-type": "text/plain; charset=utf-8",
        "allow": "GET",
    }
