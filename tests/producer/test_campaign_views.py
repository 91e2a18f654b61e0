"""Read views: campaign progress math (with a fixed clock), message history,
and the streamed report, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.ledger import apply_status
from models.status import CampaignStatus, EventSource
from models.status import MessageStatus as S
from models.tables import Campaign, Message
from producer import campaign_views
from producer.api import Producer
from producer.campaign_views import (
    EventView,
    ReportRow,
    campaign_summary,
    message_view,
    report_rows,
)
from smsq.core.settings import Settings

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
MakeMessage = Callable[..., Message]
MakeCampaign = Callable[..., Campaign]


def test_an_unknown_campaign_has_no_summary(session: Session) -> None:
    assert campaign_summary(session, "nope", now=NOW) is None


def test_summary_counts_rate_and_estimated_finish(
    session: Session, make_campaign: MakeCampaign, make_message: MakeMessage
) -> None:
    campaign = make_campaign(status=CampaignStatus.RUNNING, accepted=100, rejected=3)
    # 30 sent within the last minute, 10 earlier, one exactly at the window edge.
    for i in range(30):
        at = NOW - dt.timedelta(seconds=i)
        make_message(campaign_id=campaign.id, status=S.DELIVERED, sent_at=at)
    for _ in range(10):
        at = NOW - dt.timedelta(minutes=5)
        make_message(campaign_id=campaign.id, status=S.SENT, sent_at=at)
    make_message(campaign_id=campaign.id, status=S.SENT, sent_at=NOW - dt.timedelta(seconds=60))
    for _ in range(45):
        make_message(campaign_id=campaign.id, status=S.QUEUED)
    for _ in range(4):
        make_message(campaign_id=campaign.id, status=S.SENDING)
    make_message(campaign_id=campaign.id, status=S.FAILED)
    make_message(status=S.QUEUED)  # another campaign's (none): not counted

    summary = campaign_summary(session, campaign.id, now=NOW)

    assert summary is not None
    assert summary.counts == {"delivered": 30, "failed": 1, "queued": 45, "sending": 4, "sent": 11}
    assert (summary.accepted, summary.rejected) == (100, 3)
    assert summary.sent_last_minute == 30
    assert summary.rate_per_second == 0.5
    assert summary.to_send == 49
    assert summary.estimated_finish == NOW + dt.timedelta(seconds=98)


def test_no_estimate_without_pace_or_work_or_when_not_running(
    session: Session, make_campaign: MakeCampaign, make_message: MakeMessage
) -> None:
    idle = make_campaign(status=CampaignStatus.RUNNING)
    make_message(campaign_id=idle.id, status=S.QUEUED)
    done = make_campaign(status=CampaignStatus.RUNNING)
    make_message(campaign_id=done.id, status=S.SENT, sent_at=NOW - dt.timedelta(seconds=1))
    paused = make_campaign(status=CampaignStatus.PAUSED)
    make_message(campaign_id=paused.id, status=S.SENT, sent_at=NOW - dt.timedelta(seconds=1))
    make_message(campaign_id=paused.id, status=S.QUEUED)

    for campaign, rate, to_send in [(idle, 0.0, 1), (done, 1 / 60, 0), (paused, 1 / 60, 1)]:
        summary = campaign_summary(session, campaign.id, now=NOW)
        assert summary is not None
        assert (summary.rate_per_second, summary.to_send) == (rate, to_send)
        assert summary.estimated_finish is None


def test_message_view_has_the_history_but_never_the_text(
    session: Session, make_message: MakeMessage
) -> None:
    message = make_message(text="Your code is 482910", status=S.ACCEPTED, client_id="c1")
    apply_status(session, message, S.QUEUED, source=EventSource.PRODUCER, at=NOW)
    apply_status(session, message, S.SENDING, source=EventSource.WORKER, at=NOW)
    apply_status(session, message, S.FAILED, source=EventSource.WORKER, provider_code=12, at=NOW)
    apply_status(session, message, S.DELIVERED, source=EventSource.DLR, detail="late", at=NOW)
    session.commit()

    view = message_view(session, message.id)

    assert view is not None
    assert view.status == "failed" and view.finished_at == NOW
    assert view.events == [
        EventView("queued", "producer", True, None, None, NOW),
        EventView("sending", "worker", True, None, None, NOW),
        EventView("failed", "worker", True, 12, None, NOW),
        EventView("delivered", "dlr", False, None, "late", NOW),
    ]
    assert "482910" not in repr(view)
    assert not hasattr(view, "text")


def test_a_campaign_message_view_starts_with_its_implied_first_status(
    session: Session, make_campaign: MakeCampaign, make_message: MakeMessage
) -> None:
    # Ingestion stores no event for a campaign row's first status.
    campaign = make_campaign(status=CampaignStatus.RUNNING)
    message = make_message(campaign_id=campaign.id, status=S.QUEUED, created_at=NOW)
    apply_status(session, message, S.SENDING, source=EventSource.WORKER, at=NOW)
    session.commit()

    view = message_view(session, message.id)

    assert view is not None
    assert [(e.status, e.source) for e in view.events] == [
        ("queued", "producer"),
        ("sending", "worker"),
    ]


class NoBroker:
    def send_messages(self, ids: list[str], *, queue: str, eta: dt.datetime | None = None) -> bool:
        return True

    def start_campaign(self, campaign_id: str, *, eta: dt.datetime | None = None) -> bool:
        return True


def test_a_campaign_message_history_follows_the_configured_horizon(
    db_url: str, sessions: sessionmaker[Session], session: Session
) -> None:
    # Regression: the history was re-derived with the default horizon (120 s),
    # so with SMSQ_SCHEDULE_HORIZON=5 (the demo's) a message sent 30 s ahead,
    # stored 'scheduled' and then cancelled, showed 'queued' as its first status.
    settings = Settings(database_url=db_url, schedule_horizon=5)
    producer = Producer(settings, sessions, NoBroker(), clock=lambda: NOW)
    receipt = producer.submit_campaign(
        "soon", ["+4917012345678"], "Hi", send_at=NOW + dt.timedelta(seconds=30)
    )
    assert receipt.status == "scheduled"
    producer.cancel_campaign(receipt.campaign_id)
    message_id = session.scalars(
        select(Message.id).where(Message.campaign_id == receipt.campaign_id)
    ).one()

    view = message_view(session, message_id)

    assert view is not None
    assert [(e.status, e.source) for e in view.events] == [
        ("scheduled", "producer"),
        ("cancelled", "operator"),
    ]


def test_message_view_of_another_client_is_none(
    session: Session, make_message: MakeMessage
) -> None:
    message = make_message(client_id="c1")
    assert message_view(session, message.id, client_id="c2") is None
    assert message_view(session, message.id, client_id="c1") is not None
    assert message_view(session, "no-such-id") is None


def test_campaign_messages_are_visible_to_every_client(
    session: Session, make_campaign: MakeCampaign, make_message: MakeMessage
) -> None:
    message = make_message(campaign_id=make_campaign().id)
    assert message_view(session, message.id, client_id="c2") is not None


def test_report_rows_stream_every_recipient_in_id_order(
    session: Session,
    make_campaign: MakeCampaign,
    make_message: MakeMessage,
) -> None:
    campaign = make_campaign()
    other = make_campaign()
    made = [
        make_message(
            campaign_id=campaign.id,
            status=S.FAILED,
            error_code=5,
            error_detail="no route",
            finished_at=NOW,
        )
        for _ in range(5)
    ]
    make_message(campaign_id=other.id)

    rows = list(report_rows(session, campaign.id))

    assert rows == [
        ReportRow(m.to, m.id, "failed", 5, "no route", None, NOW, m.provider, None)
        for m in sorted(made, key=lambda m: m.id)
    ]
    assert list(report_rows(session, "none")) == []


def test_report_rows_cross_fetch_batches(
    session: Session,
    make_campaign: MakeCampaign,
    make_message: MakeMessage,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    campaign = make_campaign()
    ids = sorted(make_message(campaign_id=campaign.id).id for _ in range(7))
    monkeypatch.setattr(campaign_views, "REPORT_BATCH", 3)
    assert [row.message_id for row in report_rows(session, campaign.id)] == ids
