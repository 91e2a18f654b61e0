"""The simulator speaks both vendor APIs: parameters, answers and error codes.

Driven through ``mock_transport`` with a fake clock (2024-01-15 10:30:45 UTC,
the time of the vendor's DLR example), so the vendor's own examples with dates
in 2024 are in the future where they need to be.
"""

from __future__ import annotations

import datetime as dt
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from providers.codes import Code, describe
from providers.simulator import SimConfig, SimRequest, Simulator, mock_transport

T0 = dt.datetime(2024, 1, 15, 10, 30, 45, tzinfo=dt.UTC).timestamp()
PANEL: dict[str, str] = {
    "user": "demo@example.com",
    "apiKey": "demo-panel-key",
    "to": "+1222333444",
    "message": "Hello",
}
BRAND: dict[str, str] = {
    "key": "demo-brand-key",
    "brandID": "SMSQ",
    "numbers": "4917012345678",
    "text": "Hello",
}
CONCAT_UDH = "050003AB0201"  # reference 0xAB, part 1 of 2
FORMATS = ["json", "xml", "plain"]


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_client(**config: Any) -> tuple[Simulator, httpx.Client]:
    sim = Simulator(SimConfig(**config), clock=FakeClock())
    client = httpx.Client(transport=mock_transport(sim), base_url="https://api.panelsms.com")
    return sim, client


@pytest.fixture
def sim_client() -> Iterator[tuple[Simulator, httpx.Client]]:
    sim, client = make_client()
    with client:
        yield sim, client


def merged(base: dict[str, str], overrides: dict[str, str | None]) -> dict[str, str]:
    params = {**base, **overrides}
    return {k: v for k, v in params.items() if v is not None}


def read_panel(response: httpx.Response) -> tuple[str, int | None, str | None]:
    """(status, code, transactionId) from any of the three formats."""
    assert response.status_code == 200
    body = response.text
    if body.startswith("{"):
        inner = response.json()["response"]
        if inner["status"] == "ERROR":
            assert inner["message"] == describe(inner["code"])
        return inner["status"], inner.get("code"), inner.get("transactionId")
    if body.startswith("<"):
        root = ET.fromstring(body)
        code = root.findtext("code")
        if code is not None:
            assert root.findtext("message") == describe(int(code))
        status = root.findtext("status") or ""
        return status, int(code) if code else None, root.findtext("transactionId")
    if body.startswith("OK_"):
        return "OK", None, body[3:]
    assert body.startswith("ERROR_"), body
    return "ERROR", int(body[6:]), None


# --- panelsms: the vendor's examples ------------------------------------------


@pytest.mark.parametrize("suffix", ["&responseType=json", "&responseType=xml", ""])
def test_vendor_url_example_in_each_format(
    sim_client: tuple[Simulator, httpx.Client], suffix: str
) -> None:
    _, client = sim_client
    response = client.get(
        "https://api.panelsms.com/sendMtSms.php?user=demo@example.com&apiKey=demo-panel-key"
        "&to=%2B1222333444&message=Hello&scheduledDeliveryTime=2024-01-20T15:30:00" + suffix
    )
    status, code, tid = read_panel(response)
    assert (status, code) == ("OK", None) and tid
    if suffix.endswith("json"):
        assert response.json() == {"response": {"status": "OK", "transactionId": tid}}
        assert response.headers["content-type"].startswith("application/json")
    elif suffix.endswith("xml"):
        assert response.text == (
            f"<response><status>OK</status><transactionId>{tid}</transactionId></response>"
        )
    else:
        assert response.text == f"OK_{tid}"
        assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("rtype", FORMATS)
def test_vendor_json_post_example(sim_client: tuple[Simulator, httpx.Client], rtype: str) -> None:
    _, client = sim_client
    payload = {**PANEL, "responseType": rtype, "transactionId": "order_12345"}
    response = client.post("/sendMtSms.php", json=payload)
    assert read_panel(response) == ("OK", None, "order_12345")


def test_post_form_encoded_is_accepted(sim_client: tuple[Simulator, httpx.Client]) -> None:
    _, client = sim_client
    response = client.post("/sendMtSms.php", data={**PANEL, "responseType": "json"})
    assert read_panel(response)[0] == "OK"


def test_a_missing_transaction_id_is_generated_and_unique(
    sim_client: tuple[Simulator, httpx.Client],
) -> None:
    _, client = sim_client
    ids = {read_panel(client.get("/sendMtSms.php", params=PANEL))[2] for _ in range(5)}
    assert len(ids) == 5 and None not in ids


@pytest.mark.parametrize(
    "overrides",
    [
        {"senderId": "VERIFY"},
        {"senderId": "12345678901"},
        {"senderId": "+4915550123456"},
        {"udh": "0100"},  # the vendor's flash header
        {"udh": "06080412340201"},  # 16-bit reference concatenation
        {"dcs": "1"},
        {"dcs": "3", "message": "Olá ¿qué tal?"},
        {"dcs": "8", "message": "Привет 😀"},
        {"validityPeriod": "3600"},
        {"validityPeriod": "2024-01-16T10:00:00"},
        {"scheduledDeliveryTime": "3600"},
        {"scheduledDeliveryTime": "2024-01-15T10:31:00Z"},
        {"scheduledDeliveryTime": "2024-02-10 14:30:00"},  # the vendor's reminder example
        {"confirmation": "false"},
        {"confirmation": "true", "callbackUrl": "https://example.com/dlr-callback.php"},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_valid_optional_parameters(
    sim_client: tuple[Simulator, httpx.Client], overrides: dict[str, str]
) -> None:
    _, client = sim_client
    response = client.get("/sendMtSms.php", params={**PANEL, **overrides})
    assert read_panel(response)[:2] == ("OK", None)


# --- panelsms: every error code ----------------------------------------------

PANEL_ERRORS: list[tuple[str, dict[str, Any], dict[str, str | None], int]] = [
    ("no user", {}, {"user": None}, 1),
    ("unknown user", {}, {"user": "nobody@example.com"}, 1),
    ("disabled user", {"disabled_users": {"demo@example.com"}}, {}, 1),
    ("wrong apiKey", {}, {"apiKey": "wrong"}, 2),
    ("no apiKey", {}, {"apiKey": None}, 2),
    ("sender too long", {}, {"senderId": "ABCDEFGHIJKL"}, 4),
    ("sender with a dash", {}, {"senderId": "SMS-Q"}, 4),
    ("numeric sender too long", {}, {"senderId": "+12345678901234567"}, 4),
    ("to without +", {}, {"to": "1222333444"}, 5),
    ("to too short", {}, {"to": "+1234567"}, 5),
    ("to too long", {}, {"to": "+1234567890123456"}, 5),
    ("to with letters", {}, {"to": "+1222abc444"}, 5),
    ("queue full", {"queue_full_ratio": 1.0}, {}, 6),
    ("empty message", {}, {"message": ""}, 8),
    ("no message", {}, {"message": None}, 8),
    ("not GSM-7 with dcs 0", {}, {"message": "привет", "dcs": "0"}, 8),
    ("not GSM-7 without dcs", {}, {"message": "привет"}, 8),
    ("not Latin-1 with dcs 3", {}, {"message": "5 €", "dcs": "3"}, 8),
    ("bad validityPeriod", {}, {"validityPeriod": "tomorrow"}, 8),
    ("bad confirmation", {}, {"confirmation": "yes"}, 8),
    ("no credit", {"credit": 0}, {}, 9),
    ("odd-length udh", {}, {"udh": "050003010"}, 10),
    ("non-hex udh", {}, {"udh": "zz"}, 10),
    ("short concat udh", {}, {"udh": "0500030102"}, 10),
    ("part beyond total", {}, {"udh": "050003010203"}, 10),
    ("part zero", {}, {"udh": "050003010200"}, 10),
    ("total zero", {}, {"udh": "050003010000"}, 10),
    ("barred destination", {"barred_prefixes": ("+1222",)}, {}, 11),
    ("schedule in the past", {}, {"scheduledDeliveryTime": "2024-01-01T00:00:00"}, 12),
    ("schedule unreadable", {}, {"scheduledDeliveryTime": "next week"}, 12),
    ("schedule now", {}, {"scheduledDeliveryTime": "0"}, 12),
    ("too long", {}, {"message": "a" * 161}, 13),
    ("dcs 5", {}, {"dcs": "5"}, 14),
    ("dcs not a number", {}, {"dcs": "gsm"}, 14),
    ("binary dcs 2", {}, {"dcs": "2"}, 15),
    ("binary dcs 4", {}, {"dcs": "4"}, 15),
]


@pytest.mark.parametrize("rtype", FORMATS)
@pytest.mark.parametrize(
    ("config", "overrides", "code"),
    [pytest.param(c, o, code, id=name) for name, c, o, code in PANEL_ERRORS],
)
def test_panelsms_error_codes(
    config: dict[str, Any], overrides: dict[str, str | None], code: int, rtype: str
) -> None:
    sim, client = make_client(**config)
    params = merged(PANEL, {**overrides, "responseType": rtype})
    response = client.get("/sendMtSms.php", params=params)
    assert read_panel(response) == ("ERROR", code, None)
    assert sim.stats()["rejected"]["by_code"] == {str(code): 1}
    assert sim.stats()["accepted"] == 0


def test_every_panelsms_code_is_reachable() -> None:
    # 3 (roaming) and 7 (throttled) have tests of their own.
    assert {code for *_, code in PANEL_ERRORS} | {3, 7} == set(Code)


@pytest.mark.parametrize("rtype", FORMATS)
def test_roaming_is_code_3_and_still_sent(rtype: str) -> None:
    sim, client = make_client(roaming_prefixes=("+1222",))
    params = {**PANEL, "transactionId": "m-1", "responseType": rtype}
    status, code, tid = read_panel(client.get("/sendMtSms.php", params=params))
    assert (status, code) == ("ERROR", 3)
    assert tid == (None if rtype == "plain" else "m-1")
    assert sim.stats()["accepted"] == 1 and sim.stats()["roaming"] == 1


# --- lengths -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "dcs", "udh", "fits"),
    [
        ("a" * 160, "1", None, True),
        ("a" * 161, "1", None, False),
        ("a" * 153, "1", CONCAT_UDH, True),
        ("a" * 154, "1", CONCAT_UDH, False),
        ("€" * 80, "0", None, True),  # extension characters cost two septets
        ("€" * 80 + "a", "0", None, False),
        ("€" * 76 + "a", "0", CONCAT_UDH, True),
        ("€" * 77, "0", CONCAT_UDH, False),
        ("я" * 70, "8", None, True),
        ("я" * 71, "8", None, False),
        ("я" * 67, "8", CONCAT_UDH, True),
        ("я" * 68, "8", CONCAT_UDH, False),
        ("😀" * 35, "8", None, True),  # a surrogate pair is two UTF-16 units
        ("😀" * 35 + "a", "8", None, False),
        ("é" * 160, "3", None, True),
        ("é" * 161, "3", None, False),
    ],
    ids=lambda v: f"{len(v)}x{v[:1]}" if isinstance(v, str) and len(v) > 4 else str(v),
)
def test_part_length_limits(
    sim_client: tuple[Simulator, httpx.Client], message: str, dcs: str, udh: str | None, fits: bool
) -> None:
    _, client = sim_client
    params = merged(PANEL, {"message": message, "dcs": dcs, "udh": udh})
    expected = ("OK", None) if fits else ("ERROR", 13)
    assert read_panel(client.post("/sendMtSms.php", json=params))[:2] == expected


# --- URL encoding ------------------------------------------------------------

SPECIAL = "a+b&c=d?e#f g á é 😀"


def _vendor_query(params: dict[str, str]) -> str:
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())


@pytest.mark.parametrize("how", ["vendor-encoded GET", "httpx GET", "JSON POST", "form POST"])
def test_special_characters_arrive_intact(
    sim_client: tuple[Simulator, httpx.Client], how: str
) -> None:
    sim, client = sim_client
    params = {**PANEL, "message": SPECIAL, "dcs": "8", "responseType": "json"}
    if how == "vendor-encoded GET":
        response = client.get(f"/sendMtSms.php?{_vendor_query(params)}")
    elif how == "httpx GET":
        response = client.get("/sendMtSms.php", params=params)
    elif how == "JSON POST":
        response = client.post("/sendMtSms.php", json=params)
    else:
        response = client.post("/sendMtSms.php", data=params)
    assert read_panel(response)[0] == "OK"
    recorded = sim.last_requests[-1]["params"]
    assert recorded["message"] == SPECIAL and recorded["to"] == "+1222333444"
    assert recorded["apiKey"] == "***"  # the debug ring never shows secrets


def test_an_unencoded_plus_becomes_a_space(sim_client: tuple[Simulator, httpx.Client]) -> None:
    # The vendor's warning: '+' must be sent as %2B, a bare one means space.
    _, client = sim_client
    response = client.get(
        "/sendMtSms.php?user=demo@example.com&apiKey=demo-panel-key&to=+1222333444&message=Hi"
    )
    assert read_panel(response) == ("ERROR", 5, None)


def test_brand_form_text_arrives_intact(sim_client: tuple[Simulator, httpx.Client]) -> None:
    sim, client = sim_client
    response = client.post("/brand/send", data={**BRAND, "text": SPECIAL})
    assert response.status_code == 200
    assert sim.last_requests[-1]["params"]["text"] == SPECIAL


# --- brand -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_brand_success_lists_every_number_in_order(
    sim_client: tuple[Simulator, httpx.Client], method: str
) -> None:
    sim, client = sim_client
    numbers = ["4917012345678", "447700900123", "12223334444"]
    params = {**BRAND, "numbers": ",".join(numbers), "stopList": "false", "otp": "true"}
    if method == "POST":
        response = client.post("/brand/send", data=params)
    else:
        response = client.get("/brand/send", params=params)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "OK"
    assert [m["number"] for m in body["messages"]] == numbers
    assert len({m["smsID"] for m in body["messages"]}) == 3
    assert sim.stats()["per_number"] == dict.fromkeys(numbers, 1)


@pytest.mark.parametrize(
    "overrides",
    [
        {"sendTime": "2024-01-15 10:31"},
        {"text": "a" * 153 * 10},  # exactly 10 parts
        {"text": "Привет 😀 " * 20},
        {"numbers": ",".join(f"49170{i:08d}" for i in range(500))},
    ],
    ids=["sendTime", "10 parts", "unicode", "500 numbers"],
)
def test_brand_valid_options(
    sim_client: tuple[Simulator, httpx.Client], overrides: dict[str, str]
) -> None:
    _, client = sim_client
    response = client.post("/brand/send", data={**BRAND, **overrides})
    assert response.status_code == 200, response.text


BRAND_ERRORS: list[tuple[str, dict[str, Any], dict[str, str | None], int, int]] = [
    ("no key", {}, {"key": None}, 2, 401),
    ("wrong key", {}, {"key": "nope"}, 2, 401),
    ("wrong brandID", {}, {"brandID": "OTHER"}, 1, 401),
    ("no brandID", {}, {"brandID": None}, 1, 401),
    ("number with +", {}, {"numbers": "4917012345678,+4917012345679"}, 5, 400),
    ("number with 00", {}, {"numbers": "004917012345678"}, 5, 400),
    ("number too short", {}, {"numbers": "1234567"}, 5, 400),
    ("no numbers", {}, {"numbers": ""}, 5, 400),
    ("queue full", {"queue_full_ratio": 1.0}, {}, 6, 503),
    ("empty text", {}, {"text": ""}, 8, 400),
    ("bad stopList", {}, {"stopList": "no"}, 8, 400),
    ("bad otp", {}, {"otp": "1"}, 8, 400),
    ("not enough credit", {"credit": 1}, {"numbers": "4917012345678,4917012345679"}, 9, 400),
    ("barred number", {"barred_prefixes": ("4917",)}, {}, 11, 400),
    ("sendTime past", {}, {"sendTime": "2024-01-15 10:30"}, 12, 400),
    ("sendTime unreadable", {}, {"sendTime": "2024-01-15T10:40"}, 12, 400),
    ("text of 11 parts", {}, {"text": "a" * (153 * 10 + 1)}, 13, 400),
    (
        "too many numbers",
        {"brand_max_numbers": 2},
        {"numbers": "4917012345678,4917012345679,4917012345670"},
        15,
        400,
    ),
]


@pytest.mark.parametrize(
    ("config", "overrides", "code", "http_status"),
    [pytest.param(c, o, code, s, id=name) for name, c, o, code, s in BRAND_ERRORS],
)
def test_brand_error_codes(
    config: dict[str, Any], overrides: dict[str, str | None], code: int, http_status: int
) -> None:
    sim, client = make_client(**config)
    response = client.post("/brand/send", data=merged(BRAND, overrides))
    assert response.status_code == http_status
    body = response.json()
    assert body["status"] == "ERROR" and body["code"] == code
    assert body["message"].startswith(describe(code))
    if code == 5 and "+" in (overrides["numbers"] or ""):
        assert "+4917012345679" in body["message"]
    if code == 6:
        assert response.headers["retry-after"] == "1"
    assert sim.stats()["rejected"]["by_code"] == {str(code): 1}


def test_brand_codes_covered() -> None:
    # 7 (throttled, HTTP 429) is tested with a fake clock in test_simulator_faults.
    assert {c for _, _, _, c, _ in BRAND_ERRORS} | {7} == {1, 2, 5, 6, 7, 8, 9, 11, 12, 13, 15}


# --- routing -----------------------------------------------------------------


def test_unknown_path_and_method(sim_client: tuple[Simulator, httpx.Client]) -> None:
    sim, client = sim_client
    assert client.get("/nope").status_code == 404
    response = client.put("/sendMtSms.php")
    assert response.status_code == 405 and "POST" in response.headers["allow"]
    assert sim.stats()["requests"]["by_route"] == {"other": 1}


def test_core_is_a_plain_function() -> None:
    sim = Simulator(clock=FakeClock())
    body = json.dumps({**PANEL, "responseType": "json"}).encode()
    answer = sim.handle(
        SimRequest(
            "POST", "/sendMtSms.php", headers={"Content-Type": "application/json"}, body=body
        )
    )
    assert answer.status == 200 and answer.json()["response"]["status"] == "OK"
    assert answer.delay == 0 and not answer.hang
