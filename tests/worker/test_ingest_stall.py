"""A campaign whose upload stopped (its ingesting process died) is cancelled."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.status import CampaignStatus, MessageStatus
from models.tables import Campaign, Message, MessageEvent
from producer.campaign_views import campaign_summary
from worker.claims import claim
from worker.ingest_stall import DETAIL, StalledUpload, cancel_stalled_uploads
from worker.sweeper import sweep

S = MessageStatus
C = CampaignStatus
NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
STALL = 60


def ago(seconds: float) -> dt.datetime:
    return NOW - dt.timedelta(seconds=seconds)


def status_of(session: Session, row: Message | Campaign) -> str:
    session.expire_all()
    return session.get_one(type(row), row.id).status


def upload(
    make_campaign: Callable[..., Campaign],
    make_message: Callable[..., Message],
    *,
    touched: float,
    campaign_status: C = C.RUNNING,
    rows: tuple[S, ...] = (S.QUEUED, S.QUEUED, S.SENDING, S.SENT, S.DELIVERED, S.SUPPRESSED),
) -> tuple[Campaign, Message, list[Message]]:
    """A campaign being read: its held 'accepted' message last touched
    ``touched`` seconds ago, and rows already written."""
    campaign = make_campaign(status=campaign_status, started_at=ago(300), accepted=1)
    kind: dict[str, Any] = {"campaign_id": campaign.id, "kind": "campaign"}
    held = make_message(status=S.ACCEPTED, updated_at=ago(touched), **kind)
    written = [make_message(status=status, updated_at=ago(touched), **kind) for status in rows]
    return campaign, held, written


def test_an_upload_untouched_past_the_stall_is_cancelled_with_its_unsent_rows(
    session: Session, make_campaign: Callable[..., Campaign], make_message: Callable[..., Message]
) -> None:
    campaign, held, written = upload(make_campaign, make_message, touched=STALL + 1)

    stalled = cancel_stalled_uploads(session, now=NOW, stall_after=STALL)
    session.commit()

    # 7 written: the held one, 2 queued (cancelled now), 3 that went out, 1 suppressed.
    assert stalled == [StalledUpload(campaign.id, written=7, cancelled=3, went_out=3)]
    session.expire_all()
    stored = session.get_one(Campaign, campaign.id)
    assert (stored.status, stored.finished_at, stored.accepted) == ("cancelled", NOW, 7)
    assert status_of(session, held) == S.CANCELLED
    assert [status_of(session, m) for m in written] == [
        S.CANCELLED,
        S.CANCELLED,
        S.SENDING,  # on the wire before the cancel: it keeps going
        S.SENT,
        S.DELIVERED,
        S.SUPPRESSED,
    ]
    # Each cancelled row says why in its history.
    details = session.scalars(
        select(MessageEvent.detail).where(MessageEvent.status == S.CANCELLED)
    ).all()
    assert details == [DETAIL] * 3
    # What `smsq campaign status` shows: how many went out before the cancel.
    summary = campaign_summary(session, campaign.id, now=NOW)
    assert summary is not None and summary.status == "cancelled" and summary.to_send == 1
    assert summary.counts == {
        "cancelled": 3,
        "sending": 1,
        "sent": 1,
        "delivered": 1,
        "suppressed": 1,
    }
    # A worker claims none of them, even with their task still in the queue.
    ids = [held.id, *(m.id for m in written)]
    assert claim(session, ids, now=NOW, lease=60, token="t") == []


def test_a_slow_but_alive_upload_is_left_alone(
    session: Session, make_campaign: Callable[..., Campaign], make_message: Callable[..., Message]
) -> None:
    campaign, held, written = upload(make_campaign, make_message, touched=STALL - 5)
    assert cancel_stalled_uploads(session, now=NOW, stall_after=STALL) == []
    session.commit()
    assert status_of(session, campaign) == C.RUNNING
    assert status_of(session, held) == S.ACCEPTED
    assert status_of(session, written[0]) == S.QUEUED


def test_a_scheduled_or_paused_upload_is_cancelled_too(
    session: Session, make_campaign: Callable[..., Campaign], make_message: Callable[..., Message]
) -> None:
    draft, _, (waiting,) = upload(
        make_campaign, make_message, touched=600, campaign_status=C.DRAFT, rows=(S.SCHEDULED,)
    )
    paused, _, (queued,) = upload(
        make_campaign, make_message, touched=600, campaign_status=C.PAUSED, rows=(S.QUEUED,)
    )
    stalled = cancel_stalled_uploads(session, now=NOW, stall_after=STALL)
    session.commit()
    assert sorted(s.campaign_id for s in stalled) == sorted([draft.id, paused.id])
    assert [status_of(session, c) for c in (draft, paused)] == [C.CANCELLED, C.CANCELLED]
    assert [status_of(session, m) for m in (waiting, queued)] == [S.CANCELLED, S.CANCELLED]


def test_a_finished_ingestion_or_a_single_accepted_message_is_not_an_upload(
    session: Session, make_campaign: Callable[..., Campaign], make_message: Callable[..., Message]
) -> None:
    # The operator cancelled it already: nothing more to do (and no second finished_at).
    done, held, _ = upload(
        make_campaign, make_message, touched=600, campaign_status=C.CANCELLED, rows=()
    )
    lone = make_message(status=S.ACCEPTED, updated_at=ago(600))  # not a campaign's
    assert cancel_stalled_uploads(session, now=NOW, stall_after=STALL) == []
    session.commit()
    assert status_of(session, held) == S.ACCEPTED  # sweeper step 5 cancels it
    assert status_of(session, lone) == S.ACCEPTED
    assert session.get_one(Campaign, done.id).finished_at is None


def test_the_sweep_cancels_a_stalled_upload_only_when_asked(
    session: Session, make_campaign: Callable[..., Campaign], make_message: Callable[..., Message]
) -> None:
    campaign, held, written = upload(make_campaign, make_message, touched=STALL + 1)

    def run(stall: float | None) -> Any:
        return sweep(
            session,
            now=NOW,
            requeue_after=3600,
            unknown_resend_after=300,
            broker_lost=False,
            queue_is_empty=lambda _queue: True,
            resend_providers=(),
            ingest_stall_after=stall,
        )

    assert run(None).stalled_uploads == []
    assert status_of(session, campaign) == C.RUNNING
    assert run(STALL).stalled_uploads == [campaign.id]
    assert status_of(session, campaign) == C.CANCELLED
    assert [status_of(session, m) for m in (held, written[0])] == [S.CANCELLED, S.CANCELLED]
