"""``/v1/campaigns`` over HTTP, on SQLite and PostgreSQL: JSON and CSV
submissions, progress with a fixed clock, control, and the CSV report."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models.status import CampaignStatus
from models.status import MessageStatus as S
from models.tables import Campaign, Message
from producer.http import campaigns
from producer.keys import create_key

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
REPORT_HEADER = "to,message_id,status,error_code,error_detail,sent_at,finished_at,provider,route"


def number(i: int) -> str:
    return f"+4915550{i:06d}"


@dataclass
class Clock:
    now: dt.datetime = NOW

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass
class Recorder:
    """An enqueuer that records what would have been published."""

    sent: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)

    def send_messages(self, ids: list[str], *, queue: str, eta: dt.datetime | None = None) -> bool:
        self.sent.extend(ids)
        return True

    def start_campaign(self, campaign_id: str, *, eta: dt.datetime | None = None) -> bool:
        self.started.append(campaign_id)
        return True


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(make_api: Callable[..., FastAPI], recorder: Recorder, clock: Clock) -> FastAPI:
    return make_api(enqueuer=recorder, clock=clock)


@pytest.fixture
def api(
    app: FastAPI, session: Session, make_client: Callable[..., httpx.AsyncClient]
) -> httpx.AsyncClient:
    return make_client(app, create_key(session, "shop")[1])


def messages_of(session: Session, campaign_id: str) -> list[Message]:
    session.expire_all()
    query = select(Message).where(Message.campaign_id == campaign_id).order_by(Message.id)
    return list(session.scalars(query))


def campaign_of(session: Session, campaign_id: str) -> Campaign:
    session.expire_all()
    return session.get_one(Campaign, campaign_id)


async def upload(api: httpx.AsyncClient, content: bytes, **fields: str) -> httpx.Response:
    data = {"name": "spring", "text": "Hi {name}", **fields}
    files = {"file": ("list.csv", content, "text/csv")}
    return await api.post("/v1/campaigns", data=data, files=files)


# --- submitting ------------------------------------------------------------------


async def test_a_json_campaign_fills_the_template_and_reports_bad_rows(
    api: httpx.AsyncClient, session: Session, recorder: Recorder
) -> None:
    answer = await api.post(
        "/v1/campaigns",
        json={
            "name": "spring",
            "text": "Hi {name}",
            "recipients": [
                {"phone": number(1), "name": "Ada"},
                {"phone": number(2), "name": "Grace"},
                {"phone": "+49 170", "name": "Short"},
                {"phone": number(1), "name": "Again"},
                {"phone": number(3)},
                42,
            ],
        },
    )

    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert {k: body[k] for k in ("status", "accepted", "rejected", "suppressed")} == {
        "status": "running",
        "accepted": 2,
        "rejected": 4,
        "suppressed": 0,
    }
    assert "too short" in body["errors"][0]["reason"]
    assert [(e["row"], e["reason"]) for e in body["errors"][1:]] == [
        (4, "duplicate of row 1"),
        (5, "missing template field 'name'"),
        (6, "not a phone number or a mapping of fields"),
    ]
    rows = messages_of(session, body["id"])
    assert sorted((m.to, m.text) for m in rows) == [(number(1), "Hi Ada"), (number(2), "Hi Grace")]
    assert sorted(recorder.sent) == sorted(m.id for m in rows)


async def test_a_json_campaign_of_plain_numbers(api: httpx.AsyncClient, session: Session) -> None:
    answer = await api.post(
        "/v1/campaigns",
        json={"name": "n", "text": "Sale", "recipients": [number(1), number(2)]},
    )
    assert answer.status_code == 202
    assert answer.json()["accepted"] == 2
    assert len(messages_of(session, answer.json()["id"])) == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": "Hi", "recipients": []}, "name"),
        ({"name": "n", "text": "Hi", "recipients": "+491701234567"}, "recipients"),
        ({"name": "n", "text": "Hi {a.b}", "recipients": []}, "text"),
        ({"name": "n", "text": "Hi", "recipients": [], "provider": "nope"}, "provider"),
        ({"name": "n", "text": "Hi", "recipients": [], "colour": "red"}, "colour"),
        ({"name": "n", "text": "Hi", "recipients": [], "phone_column": " "}, "phone_column"),
    ],
)
async def test_an_invalid_json_campaign_is_422_naming_the_field(
    api: httpx.AsyncClient, session: Session, body: dict[str, Any], field: str
) -> None:
    answer = await api.post("/v1/campaigns", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field
    assert session.scalars(select(Campaign)).all() == []


async def test_a_body_that_is_not_json_is_refused_like_fastapis_own(
    api: httpx.AsyncClient,
) -> None:
    # Parsed by hand (JSON or multipart on one path), answered like a JSON route.
    body = b"{nope"
    headers = {"Content-Type": "application/json"}
    answer = await api.post("/v1/campaigns", content=body, headers=headers)
    reference = await api.post("/v1/messages", content=body, headers=headers)
    assert answer.status_code in (400, 422)
    assert answer.json()["error"]["code"] == reference.json()["error"]["code"]
    assert "not valid JSON" in answer.json()["error"]["message"]


async def test_a_csv_upload_with_a_few_bad_rows(
    api: httpx.AsyncClient, session: Session, recorder: Recorder
) -> None:
    content = (
        "\ufeffphone,name\r\n"
        f"{number(1)},Ada\r\n"
        "+49 170,Short\r\n"  # row 2: not valid
        f"{number(2)},Grace,extra\r\n"  # row 3: wrong number of columns
        "\r\n"  # row 4: empty
        f"{number(1)},Dup\r\n"  # row 5: duplicate of row 1
        f'"{number(3)}","Linus, Jr."\r\n'
    ).encode()
    content += number(4).encode() + ",Ren\xe9\r\n".encode("latin-1")  # row 7: not UTF-8

    answer = await upload(api, content)

    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert (body["accepted"], body["rejected"]) == (2, 5)
    assert [e["row"] for e in body["errors"]] == [2, 3, 4, 5, 7]
    assert body["errors"][3]["reason"] == "duplicate of row 1"
    rows = messages_of(session, body["id"])
    assert sorted(m.text for m in rows) == ["Hi Ada", "Hi Linus, Jr."]
    assert len(recorder.sent) == 2


async def test_a_csv_upload_with_its_own_phone_column_and_options(
    api: httpx.AsyncClient, session: Session, recorder: Recorder
) -> None:
    content = f"mobile,name\n{number(1)},Ada\n{number(2)},Grace\n".encode()
    answer = await upload(
        api, content, phone_column="mobile", send_at="2026-03-02T09:00:00Z", sender="Shop"
    )
    assert answer.status_code == 202, answer.text
    assert (answer.json()["status"], answer.json()["accepted"]) == ("scheduled", 2)
    campaign = campaign_of(session, answer.json()["id"])
    assert (campaign.sender, campaign.send_at) == (
        "Shop",
        dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC),
    )
    assert recorder.sent == []  # scheduled: the worker's promoter starts it


async def test_a_large_upload_is_read_in_chunks(
    api: httpx.AsyncClient, session: Session, recorder: Recorder
) -> None:
    rows = 5000  # several 64 KiB reads and several 1,000-row inserts
    content = "phone,name\n" + "".join(f"{number(i)},Customer number {i}\n" for i in range(rows))
    answer = await upload(api, content.encode())
    assert answer.status_code == 202, answer.text
    assert (answer.json()["accepted"], answer.json()["rejected"]) == (rows, 0)
    assert len(messages_of(session, answer.json()["id"])) == rows
    assert len(set(recorder.sent)) == rows


@pytest.mark.parametrize(
    ("content", "fields", "field"),
    [
        (b"number,name\n+491701234567,Ada\n", {}, "file"),  # no phone column
        (b"", {}, "file"),  # no header
        (b"phone\n+491701234567\n", {"text": ""}, "text"),
        (b"phone\n+491701234567\n", {"colour": "red"}, "colour"),
    ],
)
async def test_a_bad_upload_is_422_naming_the_field(
    api: httpx.AsyncClient,
    session: Session,
    content: bytes,
    fields: dict[str, str],
    field: str,
) -> None:
    answer = await upload(api, content, **fields)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field
    assert session.scalars(select(Campaign)).all() == []


async def test_a_form_without_a_file_is_422(api: httpx.AsyncClient) -> None:
    answer = await api.post("/v1/campaigns", data={"name": "n", "text": "Hi"}, files={})
    # httpx sends a urlencoded form without files: not an upload.
    assert answer.status_code in (415, 422)
    answer = await api.post(
        "/v1/campaigns",
        files={"name": (None, "n"), "text": (None, "Hi")},
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "file"


async def test_without_a_key_no_campaign_is_made(app: FastAPI, session: Session) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://smsq.test"
    ) as anonymous:
        answer = await anonymous.post(
            "/v1/campaigns", json={"name": "n", "text": "Hi", "recipients": [number(1)]}
        )
    assert answer.status_code == 401
    assert session.scalars(select(Campaign)).all() == []


# --- progress -------------------------------------------------------------------


async def test_progress_with_rate_and_estimated_finish(
    api: httpx.AsyncClient, session: Session, clock: Clock
) -> None:
    submitted = await api.post(
        "/v1/campaigns",
        json={"name": "n", "text": "Sale", "recipients": [number(i) for i in range(100)]},
    )
    campaign_id = submitted.json()["id"]
    ids = [m.id for m in messages_of(session, campaign_id)]
    clock.now = NOW + dt.timedelta(minutes=10)
    # 30 sent in the last minute, 10 long before; 60 still queued.
    session.execute(
        update(Message)
        .where(Message.id.in_(ids[:30]))
        .values(status=S.SENT, sent_at=clock.now - dt.timedelta(seconds=5))
    )
    session.execute(
        update(Message)
        .where(Message.id.in_(ids[30:40]))
        .values(status=S.DELIVERED, sent_at=NOW + dt.timedelta(seconds=1))
    )
    session.commit()

    answer = await api.get(f"/v1/campaigns/{campaign_id}")

    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "running"
    assert body["counts"] == {"delivered": 10, "queued": 60, "sent": 30}
    assert (body["accepted"], body["rejected"], body["to_send"]) == (100, 0, 60)
    assert (body["sent_last_minute"], body["rate_per_second"]) == (30, 0.5)
    assert body["estimated_finish"] == "2026-03-01T12:12:00Z"  # 60 left at 0.5/s


async def test_an_unknown_campaign_is_404(api: httpx.AsyncClient) -> None:
    for path in ("/v1/campaigns/nope", "/v1/campaigns/nope/report.csv"):
        answer = await api.get(path)
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "not_found"
    for action in ("pause", "resume", "cancel"):
        answer = await api.post(f"/v1/campaigns/nope/{action}")
        assert answer.status_code == 404


# --- control --------------------------------------------------------------------


async def test_pause_resume_cancel(
    api: httpx.AsyncClient, session: Session, recorder: Recorder
) -> None:
    submitted = await api.post(
        "/v1/campaigns",
        json={"name": "n", "text": "Sale", "recipients": [number(1), number(2), number(3)]},
    )
    campaign_id = submitted.json()["id"]

    async def control(action: str) -> httpx.Response:
        return await api.post(f"/v1/campaigns/{campaign_id}/{action}")

    paused = await control("pause")
    assert (paused.status_code, paused.json()["status"], paused.json()["changed"]) == (
        200,
        "paused",
        True,
    )
    again = await control("pause")
    assert (again.status_code, again.json()["changed"]) == (200, False)
    assert campaign_of(session, campaign_id).status == CampaignStatus.PAUSED

    resumed = await control("resume")
    assert (resumed.status_code, resumed.json()["status"]) == (200, "running")
    assert recorder.started == [campaign_id]

    cancelled = await control("cancel")
    assert cancelled.status_code == 200
    assert (cancelled.json()["status"], cancelled.json()["cancelled_messages"]) == ("cancelled", 3)
    assert {m.status for m in messages_of(session, campaign_id)} == {"cancelled"}

    refused = await control("pause")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "invalid_state"
    assert "cancelled" in refused.json()["error"]["message"]
    assert (await control("resume")).status_code == 409
    assert (await control("cancel")).status_code == 200  # already cancelled: a no-op


# --- the report -------------------------------------------------------------------


async def test_report_csv_has_one_row_per_recipient(
    api: httpx.AsyncClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(campaigns, "REPORT_CHUNK_ROWS", 2)  # several chunks
    submitted = await api.post(
        "/v1/campaigns",
        json={"name": "n", "text": "Sale", "recipients": [number(i) for i in range(5)]},
    )
    campaign_id = submitted.json()["id"]
    [first, second, *_] = messages_of(session, campaign_id)
    session.execute(
        update(Message)
        .where(Message.id == first.id)
        .values(
            status=S.FAILED,
            error_code=5,
            error_detail="=HYPERLINK(evil), no route",
            sent_at=NOW,
            finished_at=NOW + dt.timedelta(seconds=3),
        )
    )
    session.execute(
        update(Message)
        .where(Message.id == second.id)
        .values(status=S.DELIVERED, sent_at=NOW, provider="brand", route="bulk")
    )
    session.commit()

    answer = await api.get(f"/v1/campaigns/{campaign_id}/report.csv")

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"] == (
        f'attachment; filename="campaign-{campaign_id}.csv"'
    )
    lines = answer.text.splitlines()
    assert lines[0] == REPORT_HEADER
    table = list(csv.DictReader(io.StringIO(answer.text)))
    assert [r["message_id"] for r in table] == [m.id for m in messages_of(session, campaign_id)]
    assert table[0] == {
        "to": first.to,
        "message_id": first.id,
        "status": "failed",
        "error_code": "5",
        "error_detail": "'=HYPERLINK(evil), no route",
        "sent_at": "2026-03-01T12:00:00Z",
        "finished_at": "2026-03-01T12:00:03Z",
        "provider": first.provider,
        "route": "",
    }
    assert (table[1]["status"], table[1]["error_code"], table[1]["finished_at"]) == (
        "delivered",
        "",
        "",
    )
    assert (table[1]["provider"], table[1]["route"]) == ("brand", "bulk")
    assert {r["status"] for r in table[2:]} == {"queued"}


async def test_report_of_an_empty_campaign_is_the_header(
    api: httpx.AsyncClient,
) -> None:
    submitted = await api.post(
        "/v1/campaigns", json={"name": "n", "text": "Sale", "recipients": ["bad"]}
    )
    answer = await api.get(f"/v1/campaigns/{submitted.json()['id']}/report.csv")
    assert answer.status_code == 200
    assert answer.text == REPORT_HEADER + "\r\n"


async def test_the_newest_campaigns_are_listed_first(api: httpx.AsyncClient) -> None:
    ids = []
    for name in ("first", "second"):
        body = {"name": name, "text": "Hi", "recipients": [number(1)]}
        ids.append((await api.post("/v1/campaigns", json=body)).json()["id"])
    listed = (await api.get("/v1/campaigns")).json()
    assert [c["id"] for c in listed] == ids[::-1]
    assert (await api.get("/v1/campaigns?status=paused")).json() == []
    bad = await api.get("/v1/campaigns?status=nonsense")
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "status"
