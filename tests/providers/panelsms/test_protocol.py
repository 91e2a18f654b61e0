"""The panelsms wire: what is rendered is read back, in every format."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from models.sms_text import Encoding
from providers.codes import Code, describe
from providers.panelsms.protocol import (
    DCS_FOR_ENCODING,
    DCS_VALUES,
    FLASH_UDH,
    HEX_UDH_RE,
    Answer,
    concat_udh,
    format_time,
    parse_answer,
    read_boolean,
    read_time,
    render_answer,
    report_payload,
    response_type,
)

FORMATS = ["json", "xml", "plain"]


@pytest.mark.parametrize("rtype", FORMATS)
@pytest.mark.parametrize("code", [None, *Code])
def test_every_answer_reads_back(rtype: str, code: int | None) -> None:
    tid = "t-1" if code in (None, Code.ROAMING) else None
    answer = render_answer(rtype, code=code, transaction_id=tid)
    assert answer.status == 200  # the vendor answers errors with 200 too
    read = parse_answer(answer.body.decode())
    expected_tid = tid if rtype != "plain" or code is None else None
    assert read == Answer(code, expected_tid)
    assert read.ok is (code is None)


def test_the_vendors_own_shapes() -> None:
    assert render_answer("plain", transaction_id="1234569").body == b"OK_1234569"
    assert render_answer("plain", code=5).body == b"ERROR_5"
    body = json.loads(render_answer("json", code=7).body)
    assert body == {"response": {"status": "ERROR", "code": 7, "message": describe(7)}}
    xml = render_answer("xml", transaction_id="a<b").body.decode()
    assert xml == "<response><status>OK</status><transactionId>a&lt;b</transactionId></response>"
    assert render_answer("xml").headers["content-type"].startswith("application/xml")
    headers = render_answer("plain", code=6, headers={"retry-after": "1"}).headers
    assert headers["retry-after"] == "1"


@pytest.mark.parametrize("body", ["", "nonsense", "{", "<response>", '{"x": 1}', "ERROR_x"])
def test_unreadable_answers_are_a_value_error(body: str) -> None:
    with pytest.raises(ValueError):
        parse_answer(body)


@pytest.mark.parametrize(
    ("params", "expected"),
    [({}, "plain"), ({"responseType": "JSON"}, "json"), ({"responseType": "xml"}, "xml")],
)
def test_response_type(params: dict[str, str], expected: str) -> None:
    assert response_type(params) == expected
    assert response_type({"responseType": "csv"}) == "plain"


def test_wire_values() -> None:
    assert {int(v) for v in DCS_FOR_ENCODING.values()} <= DCS_VALUES
    assert DCS_FOR_ENCODING[Encoding.GSM7] == 1  # never 0: the vendor's 0 is Latin-1
    assert concat_udh(0x2A, 3, 1) == "0500032A0301"
    assert HEX_UDH_RE.fullmatch(FLASH_UDH) and not HEX_UDH_RE.fullmatch("010")
    assert [read_boolean(v) for v in ("true", " 1", "FALSE", "0", "yes")] == [
        True,
        True,
        False,
        False,
        None,
    ]


def test_times() -> None:
    berlin = dt.timezone(dt.timedelta(hours=1))
    assert read_time(" 3600 ", dt.UTC) == 3600
    assert read_time("2024-02-10 14:30:00", berlin) == dt.datetime(
        2024, 2, 10, 14, 30, tzinfo=berlin
    )
    assert read_time("2024-02-10T14:30:00+00:00", berlin) == dt.datetime(
        2024, 2, 10, 14, 30, tzinfo=dt.UTC
    )
    with pytest.raises(ValueError):
        read_time("tomorrow", dt.UTC)
    when = dt.datetime(2024, 2, 10, 15, 30, tzinfo=berlin)
    assert format_time(when) == "2024-02-10T14:30:00"


def test_report_payload_is_the_vendors_body() -> None:
    at = dt.datetime(2024, 1, 15, 10, 30, 45, tzinfo=dt.UTC).timestamp()
    assert report_payload("1234569", "undelivered", "+1222333444", at, 11) == {
        "transactionId": "1234569",
        "status": "undelivered",
        "destination": "+1222333444",
        "timestamp": "2024-01-15T10:30:45Z",
        "errorCode": 11,
        "errorDescription": describe(11),
    }
