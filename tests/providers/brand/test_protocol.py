"""The brand wire: parameters' formats, answers and their HTTP statuses, callbacks."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from providers.brand.protocol import (
    StatusId,
    brand_number,
    callback_params,
    format_send_time,
    http_status,
    is_ok,
    join_numbers,
    read_error,
    read_json_object,
    read_send_time,
    read_sms_ids,
    render_accepted,
    render_error,
    split_numbers,
)
from providers.codes import Code, describe


@pytest.mark.parametrize(
    ("code", "status"),
    [(1, 401), (2, 401), (6, 503), (7, 429), (5, 400), (8, 400), (15, 400)],
)
def test_error_code_to_http_status(code: int, status: int) -> None:
    assert http_status(code) == status
    answer = render_error(code, "why")
    assert answer.status == status
    data = read_json_object(answer.body)
    assert data == {"status": "ERROR", "code": code, "message": f"{describe(code)}: why"}
    error = read_error(data)
    assert error is not None and (error.code, error.message) == (code, data["message"])


def test_accepted_reads_back_in_order() -> None:
    answer = render_accepted([("4917", "a"), ("4915", "b")])
    assert answer.status == 200
    data = read_json_object(answer.body)
    assert data is not None and is_ok(data) and read_error(data) is None
    assert read_sms_ids(data, ["4917", "4915"]) == ["a", "b"]
    with pytest.raises(ValueError, match="does not match number 4915"):
        read_sms_ids(data, ["4915", "4917"])
    with pytest.raises(ValueError, match="should list 3 messages"):
        read_sms_ids(data, ["4917", "4915", "4916"])


def test_unreadable_bodies() -> None:
    assert read_json_object(b"<html>") is None
    assert read_json_object(b"[1]") is None
    with pytest.raises(ValueError, match="numeric code"):
        read_error({"status": "ERROR", "code": "x"})


def test_numbers_and_times() -> None:
    assert brand_number("+4917012345678") == "4917012345678"
    assert join_numbers(["1", "2"]) == "1,2"
    assert split_numbers(" 1 , 2") == ["1", "2"] and split_numbers(" ") == []
    berlin = dt.timezone(dt.timedelta(hours=1))
    when = dt.datetime(2024, 2, 10, 15, 30, tzinfo=berlin)
    assert format_send_time(when) == "2024-02-10 14:30"
    assert read_send_time("2024-02-10 14:30", dt.UTC) == when
    assert read_send_time("2024-02-10T14:30", dt.UTC) is None


def test_callback_is_the_vendors_query() -> None:
    at = dt.datetime(2026, 2, 1, 23, 30, 5, tzinfo=dt.UTC).timestamp()
    params = callback_params("k", "s1", "4917", StatusId.DELIVERED, at, dt.UTC)
    assert params == {
        "key": "k",
        "smsID": "s1",
        "number": "4917",
        "statusID": 1,
        "date": "2026-02-01 23:30:05",
    }
    assert json.dumps(params["statusID"]) == "1"
    assert Code.INVALID_API_KEY == 2  # 401 means key or brandID refused
