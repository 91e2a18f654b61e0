"""The drop-in ``/sendMtSms.php``: the vendor's own example requests, its
three answer formats and its error codes, with messages queued through smsq."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import fakeredis
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.tables import ApiKey, Message, Suppression
from producer.api import Producer
from producer.keys import create_key, revoke_key
from smsq.api_app import close_app_resources, create_app
from smsq.core.settings import Settings

NOW = dt.datetime(2024, 1, 15, 12, 0, tzinfo=dt.UTC)
USER = "your@email.com"
# The vendor's examples use +1222333444, which is not a dialable number (smsq
# validates numbers: ERROR_5); a valid German mobile number stands in for it.
TO = "+4917012345678"


@dataclass
class Recorder:
    calls: list[tuple[list[str], str]] = field(default_factory=list)

    def send_messages(self, ids: list[str], *, queue: str, eta: dt.datetime | None = None) -> bool:
        self.calls.append((list(ids), queue))
        return True

    def start_campaign(self, campaign_id: str, *, eta: dt.datetime | None = None) -> bool:
        return True


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def app(db_url: str, recorder: Recorder) -> Iterator[FastAPI]:
    settings = Settings(database_url=db_url, api_key_cache_seconds=0, timezone="Europe/Madrid")
    application = create_app(settings)
    application.state.redis = fakeredis.FakeRedis()
    application.state.producer = Producer(
        settings, application.state.database.session_factory, recorder, clock=lambda: NOW
    )
    yield application
    close_app_resources(application)


@pytest.fixture
def key_row(session: Session) -> tuple[ApiKey, str]:
    return create_key(session, USER)


@pytest.fixture
def key(key_row: tuple[ApiKey, str]) -> str:
    return key_row[1]


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://api.smsq.test") as c:
        yield c


def rows(session: Session) -> list[Message]:
    session.expire_all()
    return list(session.scalars(select(Message).order_by(Message.id)))


def params(key: str, **extra: str) -> dict[str, str]:
    return {"user": USER, "apiKey": key, "to": TO, "message": "Hello", **extra}


# --- the vendor's own examples ------------------------------------------------


async def test_vendor_get_example_with_json_answer(
    client: httpx.AsyncClient, key: str, session: Session, recorder: Recorder
) -> None:
    # sendMtSms.php?user=...&apiKey=...&to=%2B1222333444&message=Hello
    #   &scheduledDeliveryTime=2024-01-20T15:30:00&responseType=json
    url = (
        f"/sendMtSms.php?user=your%40email.com&apiKey={key}&to=%2B4917012345678"
        "&message=Hello&scheduledDeliveryTime=2024-01-20T15:30:00&responseType=json"
    )
    answer = await client.get(url)
    assert answer.status_code == 200
    [message] = rows(session)
    assert answer.json() == {"response": {"status": "OK", "transactionId": message.id}}
    assert (message.to, message.text, message.status) == (TO, "Hello", "scheduled")
    # No offset: read in SMSQ_TIMEZONE (Madrid, UTC+1 in January).
    assert message.send_at == dt.datetime(2024, 1, 20, 14, 30, tzinfo=dt.UTC)
    assert recorder.calls == []  # scheduled far ahead: the promoter enqueues it later


async def test_vendor_python_example_posts_json_and_gets_plain_text(
    client: httpx.AsyncClient, key: str, session: Session, recorder: Recorder
) -> None:
    # requests.post(url, json=payload), no responseType: plain text.
    answer = await client.post("/sendMtSms.php", json=params(key, message="your_message"))
    [message] = rows(session)
    assert (answer.status_code, answer.text) == (200, f"OK_{message.id}")
    assert recorder.calls == [([message.id], "transactional")]
    key_id = session.scalars(select(ApiKey.id)).one()
    assert message.client_id == key_id


async def test_vendor_otp_example_with_sender(
    client: httpx.AsyncClient, key: str, session: Session
) -> None:
    query = params(key, message="Your verification code is: 123456", senderId="VERIFY")
    answer = await client.get("/sendMtSms.php", params={**query, "responseType": "json"})
    assert answer.json()["response"]["status"] == "OK"
    [message] = rows(session)
    assert message.sender == "VERIFY"


async def test_vendor_order_example_transaction_id_makes_a_repeat_return_the_same_id(
    client: httpx.AsyncClient, key: str, session: Session, recorder: Recorder
) -> None:
    query = params(
        key,
        message="Order #12345 confirmed. Track at: https://example.com/track/12345",
        senderId="ORDER",
        transactionId="order_12345",
        confirmation="true",
        responseType="json",
    )
    first = await client.get("/sendMtSms.php", params=query)
    again = await client.get("/sendMtSms.php", params=query)
    assert first.json() == again.json()
    [message] = rows(session)
    assert first.json()["response"]["transactionId"] == message.id
    assert message.idempotency_key == "order_12345"
    assert len(recorder.calls) == 1


async def test_vendor_campaign_example_with_callback_url(
    client: httpx.AsyncClient, key: str, session: Session
) -> None:
    query = params(
        key,
        message="Get 50% off! Use code SPRING2024. Valid until Feb 28",
        senderId="PROMO",
        transactionId="SPRING2024_7",
        confirmation="true",
        callbackUrl="https://example.com/dlr-callback.php",
        responseType="json",
    )
    answer = await client.get("/sendMtSms.php", params=query)
    assert answer.json()["response"]["status"] == "OK"
    [message] = rows(session)
    assert message.callback_url == "https://example.com/dlr-callback.php"


async def test_xml_answer_and_form_post(
    client: httpx.AsyncClient, key: str, session: Session
) -> None:
    answer = await client.post("/sendMtSms.php", data=params(key, responseType="xml"))
    assert answer.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(answer.text)
    [message] = rows(session)
    assert root.tag == "response"
    assert (root.findtext("status"), root.findtext("transactionId")) == ("OK", message.id)


async def test_flash_udh_sends_a_flash_sms(
    client: httpx.AsyncClient, key: str, session: Session
) -> None:
    answer = await client.get("/sendMtSms.php", params=params(key, udh="0100"))
    assert answer.text.startswith("OK_")
    assert rows(session)[0].flash is True


# --- errors: the vendor's codes in each format -----------------------------------


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"to": "recipient"}, 5),
        ({"to": "+1222333444"}, 5),
        ({"to": f"{TO},+4917012345679"}, 5),
        ({"message": ""}, 8),
        ({"message": "x" * 2000}, 13),
        ({"senderId": "A-VERY-LONG-SENDER-NAME"}, 4),
        ({"scheduledDeliveryTime": "2020-01-01T00:00:00"}, 12),
        ({"scheduledDeliveryTime": "tomorrow"}, 12),
        ({"validityPeriod": "soon"}, 8),
        ({"confirmation": "maybe"}, 8),
        ({"dcs": "9"}, 14),
        ({"dcs": "2"}, 15),
        ({"udh": "zz"}, 10),
        ({"udh": "050003CC0201"}, 15),
        ({"udh": "0100", "message": "x" * 200}, 13),
        ({"callbackUrl": "ftp://example.com"}, 8),
        ({"user": "someone@else.com"}, 1),
        ({"user": ""}, 1),
        ({"apiKey": "wrong"}, 2),
        ({"apiKey": ""}, 2),
    ],
)
async def test_errors_answer_the_vendor_code(
    client: httpx.AsyncClient, key: str, session: Session, change: dict[str, str], code: int
) -> None:
    query = {**params(key), **change}
    plain = await client.get("/sendMtSms.php", params=query)
    assert (plain.status_code, plain.text) == (200, f"ERROR_{code}")
    as_json = await client.get("/sendMtSms.php", params={**query, "responseType": "json"})
    inner = as_json.json()["response"]
    assert (inner["status"], inner["code"]) == ("ERROR", code)
    as_xml = await client.get("/sendMtSms.php", params={**query, "responseType": "xml"})
    root = ET.fromstring(as_xml.text)
    assert (root.findtext("status"), root.findtext("code")) == ("ERROR", str(code))
    assert rows(session) == []


async def test_a_revoked_key_is_error_1(
    client: httpx.AsyncClient, key_row: tuple[ApiKey, str], session: Session
) -> None:
    row, key = key_row
    revoke_key(session, row.id)
    answer = await client.get("/sendMtSms.php", params=params(key))
    assert answer.text == "ERROR_1"


async def test_user_may_be_the_key_id(
    client: httpx.AsyncClient, key_row: tuple[ApiKey, str]
) -> None:
    row, key = key_row
    answer = await client.get("/sendMtSms.php", params={**params(key), "user": row.id})
    assert answer.text.startswith("OK_")


async def test_a_stop_listed_number_is_destination_barred(
    client: httpx.AsyncClient, key: str, session: Session, recorder: Recorder
) -> None:
    session.add(Suppression(number=TO))
    session.commit()
    plain = await client.get("/sendMtSms.php", params=params(key))
    assert plain.text == "ERROR_11"
    as_json = await client.get(
        "/sendMtSms.php", params=params(key, responseType="json", transactionId="t1")
    )
    inner = as_json.json()["response"]
    assert inner["code"] == 11 and inner["transactionId"] == rows(session)[-1].id
    assert recorder.calls == []


async def test_over_the_rate_limit_is_error_7(client: httpx.AsyncClient, session: Session) -> None:
    _, key = create_key(session, "slow", rate_limit=1)
    query = {**params(key), "user": "slow"}
    answers = [(await client.get("/sendMtSms.php", params=query)) for _ in range(4)]
    refused = [a for a in answers if a.text == "ERROR_7"]
    assert refused and int(refused[0].headers["retry-after"]) >= 1


async def test_a_json_body_that_is_not_an_object_is_error_8(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        "/sendMtSms.php", content=b"[1]", headers={"Content-Type": "application/json"}
    )
    assert answer.text == "ERROR_8"


async def test_the_api_key_is_not_logged(
    client: httpx.AsyncClient, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    await client.get("/sendMtSms.php", params=params(key, message="code 918273"))
    await client.get("/sendMtSms.php", params=params(key + "x", message="code 918273"))
    assert key.split("_", 2)[2][:10] not in caplog.text
    assert "918273" not in caplog.text


@pytest.mark.parametrize(
    "param", ["scheduledDeliveryTime=99999999999999999999", "validityPeriod=99999999999999999999"]
)
async def test_a_time_beyond_any_date_is_a_vendor_error_not_a_crash(
    client: httpx.AsyncClient, key: str, session: Session, param: str
) -> None:
    # Regression (fuzz): now + that many seconds overflowed: a 500.
    url = (
        f"/sendMtSms.php?user=your%40email.com&apiKey={key}&to=%2B4917012345678&message=Hi&{param}"
    )
    answer = await client.get(url)
    assert answer.status_code == 200 and answer.text.startswith("ERROR_"), answer.text
    assert rows(session) == []
