from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models.tables import Campaign, Message, MessageEvent, Suppression
from producer import campaign_ingestion, campaign_writers
from producer.api import Producer
from producer.campaign_history import implied_first_event
from producer.campaign_ingestion import FIRST_CHUNK
from producer.errors import InvalidField
from producer.receipts import MAX_ERRORS
from smsq.core.settings import Settings
from worker.ingest_stall import cancel_stalled_uploads

NOW = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.UTC)
HORIZON = 120
BATCH = 500


def number(i: int) -> str:
    """A valid German mobile number, distinct for each i < 10**7."""
    return f"+49170{i:07d}"


@dataclass
class Call:
    ids: list[str]
    queue: str
    eta: dt.datetime | None
    consumed: int  # how many recipient rows had been read at that moment
    visible: dict[str, str]  # id -> status, read in a new session at call time


@dataclass
class RecordingEnqueuer:
    sessions: sessionmaker[Session]
    progress: list[int] = field(default_factory=lambda: [0])
    calls: list[Call] = field(default_factory=list)

    def send_messages(self, ids: list[str], *, queue: str, eta: dt.datetime | None = None) -> bool:
        with self.sessions() as session:
            visible = dict(
                session.execute(select(Message.id, Message.status).where(Message.id.in_(ids))).all()
            )
        self.calls.append(Call(list(ids), queue, eta, self.progress[0], visible))
        return True

    def start_campaign(self, campaign_id: str, *, eta: dt.datetime | None = None) -> bool:
        raise AssertionError("a scheduled campaign is started by the worker's promoter")

    @property
    def ids(self) -> list[str]:
        return [mid for call in self.calls for mid in call.ids]


@pytest.fixture
def recorder(sessions: sessionmaker[Session]) -> RecordingEnqueuer:
    return RecordingEnqueuer(sessions)


@pytest.fixture
def producer(db_url: str, sessions: sessionmaker[Session], recorder: RecordingEnqueuer) -> Producer:
    settings = Settings(
        database_url=db_url, schedule_horizon=HORIZON, batch_size=BATCH, max_parts=2
    )
    return Producer(settings, sessions, recorder, clock=lambda: NOW)


def messages(session: Session, campaign_id: str) -> dict[str, Message]:
    session.expire_all()
    rows = session.scalars(select(Message).where(Message.campaign_id == campaign_id))
    return {m.to: m for m in rows}


def history(session: Session, message: Message) -> list[str]:
    """A message's statuses as a reader shows them: implied first, then stored."""
    stored = session.execute(
        select(MessageEvent.status, MessageEvent.source)
        .where(MessageEvent.message_id == message.id)
        .order_by(MessageEvent.id)
    ).all()
    first = implied_first_event(message, (stored[0][0], stored[0][1]) if stored else None)
    return ([first.status] if first else []) + [status for status, _ in stored]


def events_by_message(session: Session) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for mid, status in session.execute(
        select(MessageEvent.message_id, MessageEvent.status).order_by(MessageEvent.id)
    ):
        out.setdefault(mid, []).append(status)
    return out


def campaign(session: Session, campaign_id: str) -> Campaign:
    session.expire_all()
    return session.get_one(Campaign, campaign_id)


# --- streaming ---------------------------------------------------------------


def test_recipients_are_streamed_and_sending_starts_before_the_end(
    producer: Producer, recorder: RecordingEnqueuer, session: Session
) -> None:
    total = 5000

    def rows() -> Iterator[dict[str, str]]:
        for i in range(total):
            recorder.progress[0] = i + 1
            if i == FIRST_CHUNK + 500:
                time.sleep(0.3)  # a slow upload: the first chunk is surely in
            yield {"phone": number(i), "name": f"person {i}"}

    receipt = producer.submit_campaign("spring sale", rows(), "Hi {name}!")

    assert (receipt.accepted, receipt.rejected, receipt.errors) == (total, 0, [])
    assert receipt.status == "running"
    # The first task went out while most of the rows were still unread: once
    # the first (small) chunk was committed, noticed within POLL_EVERY rows.
    assert recorder.calls[0].consumed <= 2 * FIRST_CHUNK < total
    # Every id was committed as 'queued' before its task, one task per batch.
    for call in recorder.calls:
        assert call.queue == "campaign"
        assert call.eta is None
        assert len(call.ids) <= BATCH
        assert set(call.visible.values()) == {"queued"}
        assert set(call.visible) == set(call.ids)
    assert sorted(len(c.ids) for c in recorder.calls)[-1] == BATCH
    assert len(recorder.ids) == len(set(recorder.ids)) == total

    rows_by_number = messages(session, receipt.campaign_id)
    assert len(rows_by_number) == total
    assert {m.status for m in rows_by_number.values()} == {"queued"}
    assert set(recorder.ids) == {m.id for m in rows_by_number.values()}
    first = rows_by_number[number(0)]
    assert (first.text, first.kind, first.provider) == ("Hi person 0!", "campaign", "panel")
    assert first.expires_at == NOW + dt.timedelta(days=1)
    # No event is stored for the first status; the history still starts
    # with it, implied by the row.
    assert events_by_message(session) == {}
    assert all(history(session, m) == ["queued"] for m in rows_by_number.values())

    stored = campaign(session, receipt.campaign_id)
    assert (stored.status, stored.accepted, stored.rejected) == ("running", total, 0)
    assert (stored.name, stored.text, stored.started_at) == ("spring sale", "Hi {name}!", NOW)


def test_plain_numbers_with_a_fixed_text(
    producer: Producer, recorder: RecordingEnqueuer, session: Session
) -> None:
    receipt = producer.submit_campaign(
        "plain", (number(i) for i in range(3)), "Sale {{today}} only", sender="SHOP"
    )
    assert (receipt.accepted, receipt.rejected) == (3, 0)
    rows = messages(session, receipt.campaign_id)
    assert {m.text for m in rows.values()} == {"Sale {today} only"}
    assert {m.sender for m in rows.values()} == {"SHOP"}
    assert sorted(recorder.ids) == sorted(m.id for m in rows.values())


# --- rows that are rejected ------------------------------------------------------


def test_bad_rows_are_reported_with_their_row_numbers(producer: Producer, session: Session) -> None:
    recipients: list[Any] = [
        {"phone": number(1), "name": "Ann"},  # 1 ok
        {"phone": "+49 170 CALLME", "name": "Bob"},  # 2 letters
        {"phone": number(3)},  # 3 no name
        {"phone": number(4), "name": "Ünal 😀" * 30},  # 4 too long once filled (UCS-2)
        {"name": "Dee"},  # 5 no phone
        {"phone": "0170 1234567", "name": "Eve"},  # 6 no country code
        {"phone": number(1), "name": "Ann again"},  # 7 duplicate of row 1
        {"phone": "+49 170 0000001", "name": "Ann, spaced"},  # 8 the same number, written apart
        {"phone": number(9), "name": None},  # 9 an empty cell
        {"phone": number(10), "name": "Gus"},  # 10 ok
        42,  # 11 not a row
    ]
    receipt = producer.submit_campaign("mixed", recipients, "Hi {name}")
    assert (receipt.accepted, receipt.rejected) == (2, 9)
    assert [(e.row, e.value, e.reason) for e in receipt.errors] == [
        (2, "+49 170 CALLME", "not a phone number"),
        (3, number(3), "missing template field 'name'"),
        (4, number(4), receipt.errors[2].reason),
        (5, "", "missing phone field 'phone'"),
        (6, "0170 1234567", "missing country code (use +<country code>)"),
        (7, number(1), "duplicate of row 1"),
        (8, "+49 170 0000001", "duplicate of row 1"),
        (9, number(9), "missing template field 'name'"),
        (11, "42", "not a phone number or a mapping of fields"),
    ]
    assert receipt.errors[2].reason.startswith("too long:")
    assert "UCS-2 (ucs2)" in receipt.errors[2].reason
    assert "'😀'" in receipt.errors[2].reason
    assert sorted(messages(session, receipt.campaign_id)) == [number(1), number(10)]
    stored = campaign(session, receipt.campaign_id)
    assert (stored.accepted, stored.rejected) == (2, 9)


def test_a_number_rejected_for_its_text_may_come_again(producer: Producer) -> None:
    receipt = producer.submit_campaign(
        "retry", [{"phone": number(1)}, {"phone": number(1), "name": "Ann"}], "Hi {name}"
    )
    assert (receipt.accepted, receipt.rejected) == (1, 1)
    assert receipt.errors[0].reason == "missing template field 'name'"


def test_errors_are_capped_but_every_rejected_row_is_counted(
    producer: Producer, session: Session
) -> None:
    def rows() -> Iterator[str]:
        for i in range(1, 1001):
            yield "not a number" if i % 4 == 0 else number(i)

    receipt = producer.submit_campaign("capped", rows(), "Hello")
    assert (receipt.accepted, receipt.rejected) == (750, 250)
    assert len(receipt.errors) == MAX_ERRORS
    assert [e.row for e in receipt.errors] == list(range(4, 4 * MAX_ERRORS + 1, 4))
    stored = campaign(session, receipt.campaign_id)
    assert (stored.accepted, stored.rejected) == (750, 250)


def test_a_campaign_with_every_row_rejected_is_finished_at_once(
    producer: Producer, recorder: RecordingEnqueuer, session: Session
) -> None:
    receipt = producer.submit_campaign("nothing", ["x", "y"], "Hello")
    assert (receipt.accepted, receipt.rejected, receipt.status) == (0, 2, "finished")
    stored = campaign(session, receipt.campaign_id)
    assert (stored.status, stored.finished_at, stored.accepted, stored.rejected) == (
        "finished",
        NOW,
        0,
        2,
    )
    assert recorder.calls == []


def test_bad_templates_and_fields_are_refused_before_reading_a_row(
    producer: Producer, session: Session
) -> None:
    def untouchable() -> Iterator[str]:
        raise AssertionError("read")
        yield ""

    bad: list[dict[str, Any]] = [
        {"text": "Hi {user.name}"},
        {"text": "Hi {}"},
        {"text": "a" * 400},  # more than max_parts=2 even before filling in
        {"name": ""},
        {"send_at": "2026-01-01 10:00"},
        {"provider": "acme"},
    ]
    for override in bad:
        args: dict[str, Any] = {"name": "x", "text": "Hi {name}", **override}
        with pytest.raises(InvalidField) as exc:
            producer.submit_campaign(args.pop("name"), untouchable(), args.pop("text"), **args)
        assert exc.value.field in override
    assert session.scalar(select(func.count()).select_from(Campaign)) == 0


def test_a_list_that_fails_midway_cancels_its_campaign(
    producer: Producer, recorder: RecordingEnqueuer, session: Session
) -> None:
    def rows() -> Iterator[str]:
        for i in range(FIRST_CHUNK + 500):
            yield number(i)
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    with pytest.raises(UnicodeDecodeError):
        producer.submit_campaign("broken", rows(), "Hello")
    (stored,) = session.scalars(select(Campaign))
    # The chunks written stay, counted, but the campaign is cancelled, so the
    # worker claims none of them (a retried upload would otherwise send twice).
    assert (stored.status, stored.finished_at) == ("cancelled", NOW)
    assert stored.accepted == FIRST_CHUNK
    assert session.scalar(select(func.count()).select_from(Message)) == FIRST_CHUNK


class FailingEnqueuer:
    def send_messages(self, ids: list[str], *, queue: str, eta: dt.datetime | None = None) -> bool:
        raise ConnectionError("broker down")

    def start_campaign(self, campaign_id: str, *, eta: dt.datetime | None = None) -> bool:
        raise ConnectionError("broker down")


def test_a_dead_broker_does_not_fail_the_ingestion(producer: Producer, session: Session) -> None:
    down = Producer(producer.settings, producer.sessions, FailingEnqueuer(), clock=lambda: NOW)
    receipt = down.submit_campaign("down", (number(i) for i in range(1500)), "Hello")
    assert (receipt.accepted, receipt.status) == (1500, "running")
    rows = messages(session, receipt.campaign_id).values()
    assert Counter(m.status for m in rows) == {"queued": 1500}  # the sweeper enqueues them


# --- stop list ---------------------------------------------------------------


@pytest.mark.parametrize("held_in_memory", [True, False])
def test_stop_listed_numbers_are_recorded_suppressed_not_sent(
    producer: Producer,
    recorder: RecordingEnqueuer,
    session: Session,
    monkeypatch: pytest.MonkeyPatch,
    held_in_memory: bool,
) -> None:
    if not held_in_memory:  # a stop list too large to hold: queried per chunk
        monkeypatch.setattr(campaign_writers, "PRELOAD_STOP_LIST", 1)
    session.add_all([Suppression(number=number(0)), Suppression(number=number(2))])
    session.commit()
    receipt = producer.submit_campaign("stop", [number(i) for i in range(4)], "Hello")
    assert (receipt.accepted, receipt.rejected, receipt.suppressed) == (4, 0, 2)
    rows = messages(session, receipt.campaign_id)
    statuses = {to: m.status for to, m in rows.items()}
    assert statuses == {
        number(0): "suppressed",
        number(1): "queued",
        number(2): "suppressed",
        number(3): "queued",
    }
    assert rows[number(0)].finished_at == NOW
    assert sorted(recorder.ids) == sorted([rows[number(1)].id, rows[number(3)].id])
    assert {to: history(session, m) for to, m in rows.items()} == {
        to: [status] for to, status in statuses.items()
    }


def test_a_campaign_of_stop_listed_numbers_only_is_finished(
    producer: Producer, recorder: RecordingEnqueuer, session: Session
) -> None:
    session.add(Suppression(number=number(0)))
    session.commit()
    receipt = producer.submit_campaign("stop", [number(0)], "Hello")
    assert (receipt.accepted, receipt.suppressed, receipt.status) == (1, 1, "finished")
    assert recorder.calls == []


# --- scheduling --------------------------------------------------------------


def test_a_scheduled_campaign_waits_in_the_db_with_no_send_tasks(
    producer: Producer, recorder: RecordingEnqueuer, session: Session
) -> None:
    send_at = NOW + dt.timedelta(days=1)
    receipt = producer.submit_campaign(
        "tomorrow", (number(i) for i in range(2500)), "Hello", send_at=send_at
    )
    assert (receipt.accepted, receipt.status) == (2500, "scheduled")
    assert recorder.calls == []
    stored = campaign(session, receipt.campaign_id)
    assert (stored.status, stored.send_at, stored.started_at) == ("scheduled", send_at, None)
    rows = messages(session, receipt.campaign_id).values()
    assert Counter(m.status for m in rows) == {"scheduled": 2500}
    assert {m.send_at for m in rows} == {send_at}
    assert {m.expires_at for m in rows} == {send_at + dt.timedelta(days=1)}
    assert events_by_message(session) == {}
    assert all(history(session, m) == ["scheduled"] for m in rows)


def test_a_campaign_due_within_the_horizon_is_enqueued_with_an_eta(
    producer: Producer, recorder: RecordingEnqueuer, session: Session
) -> None:
    send_at = NOW + dt.timedelta(seconds=60)
    receipt = producer.submit_campaign(
        "soon", [number(i) for i in range(3)], "Hello", send_at=send_at
    )
    assert receipt.status == "running"
    assert {c.eta for c in recorder.calls} == {send_at}
    assert len(recorder.ids) == 3
    stored = campaign(session, receipt.campaign_id)
    assert (stored.status, stored.started_at) == ("running", send_at)


# --- counts --------------------------------------------------------------------


def test_counts_are_stored_on_the_campaign(producer: Producer, session: Session) -> None:
    session.add(Suppression(number=number(5)))
    session.commit()
    rows = [number(i) for i in range(10)] + ["bad", number(0)]
    receipt = producer.submit_campaign("counts", rows, "Hello")
    stored = campaign(session, receipt.campaign_id)
    assert (stored.accepted, stored.rejected) == (10, 2)
    assert (receipt.accepted, receipt.rejected, receipt.suppressed) == (10, 2, 1)
    assert (
        session.scalar(
            select(func.count()).select_from(Message).where(Message.campaign_id == stored.id)
        )
        == 10
    )


# --- routes (docs/routing.md) -----------------------------------------------------

# Numbers of several countries and the (provider, route) each is stored with
# by the routes of tests/producer/conftest.py: fr-mobile by prefix before bulk,
# uk by country, everything else bulk.
ROUTED_NUMBERS = {
    "+33612345678": ("panel2", "fr-mobile"),
    "+33751234567": ("panel2", "fr-mobile"),
    "+33123456789": ("panel", "bulk"),  # French, not a mobile prefix
    "+447400123456": ("panel2", "uk"),
    "+447797712345": ("panel2", "uk"),  # Jersey
    "+4915123456789": ("panel", "bulk"),
    "+43664123456": ("panel", "bulk"),
    "+12015550123": ("panel", "bulk"),
    "+15062345678": ("panel", "bulk"),
    "+393123456789": ("panel", "bulk"),
    "+48512345678": ("panel", "bulk"),
}


@pytest.fixture
def routed(
    db_url: str,
    sessions: sessionmaker[Session],
    recorder: RecordingEnqueuer,
    providers_file: Any,
) -> Producer:
    settings = Settings(
        database_url=db_url,
        schedule_horizon=HORIZON,
        batch_size=BATCH,
        max_parts=2,
        providers_file=providers_file(),
        default_provider="panel",
    )
    return Producer(settings, sessions, recorder, clock=lambda: NOW)


def test_each_campaign_row_is_stored_with_its_own_route(
    routed: Producer, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("producer.campaign_ingestion.FIRST_CHUNK", 4)  # several chunks
    session.add(Suppression(number="+48512345678"))
    session.commit()
    receipt = routed.submit_campaign("mixed", list(ROUTED_NUMBERS), "Sale")
    assert (receipt.accepted, receipt.suppressed) == (len(ROUTED_NUMBERS), 1)
    stored = {m.to: (m.provider, m.route) for m in messages(session, receipt.campaign_id).values()}
    assert stored == ROUTED_NUMBERS
    assert campaign(session, receipt.campaign_id).provider == "panel"  # the default account


def test_a_campaign_named_for_a_route_or_an_account_uses_it_for_every_row(
    routed: Producer, session: Session
) -> None:
    by_route = routed.submit_campaign("r", list(ROUTED_NUMBERS), "Sale", provider="uk")
    by_account = routed.submit_campaign("a", list(ROUTED_NUMBERS), "Sale", provider="brand")
    assert {(m.provider, m.route) for m in messages(session, by_route.campaign_id).values()} == {
        ("panel2", "uk")
    }
    assert {(m.provider, m.route) for m in messages(session, by_account.campaign_id).values()} == {
        ("brand", None)
    }
    assert campaign(session, by_route.campaign_id).provider == "uk"


def test_a_campaign_sender_a_route_cannot_carry_is_refused_before_reading(
    routed: Producer, session: Session
) -> None:
    def rows() -> Iterator[str]:
        raise AssertionError("no row is read")
        yield ""

    with pytest.raises(InvalidField) as info:
        routed.submit_campaign("s", rows(), "Sale", sender="SHOP")
    assert info.value.field == "sender"
    assert "route 'bulk'" in str(info.value) and "account 'brand'" in str(info.value)
    assert session.scalar(select(func.count()).select_from(Campaign)) == 0


def test_without_routes_campaign_rows_have_none(producer: Producer, session: Session) -> None:
    receipt = producer.submit_campaign("plain", [number(i) for i in range(3)], "Sale")
    stored = {(m.provider, m.route) for m in messages(session, receipt.campaign_id).values()}
    assert stored == {("panel", None)}


# --- the heartbeat of an upload (worker.ingest_stall) ---------------------------


def held_touched_at(sessions: sessionmaker[Session]) -> dt.datetime | None:
    """The held ('accepted') message's updated_at, read in a session of its own."""
    with sessions() as other:
        return other.scalar(select(Message.updated_at).where(Message.status == "accepted"))


def test_a_slow_upload_keeps_touching_its_held_message(
    producer: Producer, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(campaign_ingestion, "HEARTBEAT_EVERY", 0.1)
    seen: list[dt.datetime | None] = []

    def rows() -> Iterator[str]:
        for i in range(FIRST_CHUNK + 10):
            if i == FIRST_CHUNK + 1:
                # A client that sends nothing for a while: no chunk is
                # committed, yet the held message is touched.
                time.sleep(0.3)  # the first chunk is in
                seen.append(held_touched_at(sessions))
                time.sleep(0.6)
                seen.append(held_touched_at(sessions))
            yield number(i)

    receipt = producer.submit_campaign("slow", rows(), "Hello")

    assert (receipt.accepted, receipt.status) == (FIRST_CHUNK + 10, "running")
    first, later = seen
    assert first is not None and later is not None
    assert later - first >= dt.timedelta(seconds=0.3)


def test_an_upload_cancelled_as_stalled_settles_nothing_and_says_cancelled(
    producer: Producer,
    recorder: RecordingEnqueuer,
    sessions: sessionmaker[Session],
    session: Session,
) -> None:
    """A process frozen past SMSQ_INGEST_STALL_AFTER comes back after the
    sweeper cancelled its campaign: the late settle is a no-op."""

    def rows() -> Iterator[str]:
        for i in range(FIRST_CHUNK + 1500):
            if i == FIRST_CHUNK + 500:
                time.sleep(0.3)  # the first chunk is in
                with sessions() as sweeper:
                    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
                    assert cancel_stalled_uploads(sweeper, now=later, stall_after=60)
                    sweeper.commit()
            yield number(i)

    receipt = producer.submit_campaign("frozen", rows(), "Hello")

    assert receipt.status == "cancelled"
    stored = campaign(session, receipt.campaign_id)
    assert stored.status == "cancelled"
    by_number = messages(session, receipt.campaign_id)
    held = by_number[number(0)]
    assert held.status == "cancelled" and held.id not in recorder.ids
    # Rows written after the cancel are never claimed (the campaign is not
    # running) and the next sweep cancels them; none of them was enqueued at the end.
    assert Counter(m.status for m in by_number.values())["cancelled"] == FIRST_CHUNK
