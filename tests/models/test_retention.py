"""Retention (models.retention): what ``smsq db prune`` deletes, and what it keeps.

An operator relies on: nothing live or unresolved goes, a campaign goes
whole or not at all, a dry run counts exactly what the prune then deletes,
and the work comes in short batches that a time budget can stop.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models.retention import prune
from models.status import CampaignStatus, MessageStatus
from models.tables import Campaign, IdempotencyRecord, Message, MessageEvent, WebhookDelivery

S = MessageStatus
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
OLD = NOW - dt.timedelta(days=100)
RECENT = NOW - dt.timedelta(days=10)
KEEP = dt.timedelta(days=90)


@pytest.fixture
def history(
    session: Session,
    make_message: Callable[..., Message],
    make_campaign: Callable[..., Campaign],
) -> dict[str, Any]:
    """Old and recent rows of every kind; ``gone``: the ids a 90-day prune deletes."""

    def ended(status: MessageStatus, at: dt.datetime, **fields: Any) -> Message:
        sent = None if status in (S.EXPIRED, S.CANCELLED) else at - dt.timedelta(seconds=5)
        finished = None if status in (S.SENT, S.UNKNOWN) else at
        return make_message(status=status, sent_at=sent, finished_at=finished, **fields)

    old_campaign = make_campaign(status=CampaignStatus.FINISHED, finished_at=OLD)
    recent_campaign = make_campaign(status=CampaignStatus.FINISHED, finished_at=RECENT)
    running = make_campaign(status=CampaignStatus.RUNNING)
    rows = {
        "old delivered": ended(S.DELIVERED, OLD),
        "old failed": ended(S.FAILED, OLD),
        "old expired": ended(S.EXPIRED, OLD),
        "old sent, no report": ended(S.SENT, OLD),
        "old unknown": ended(S.UNKNOWN, OLD),
        "recent delivered": ended(S.DELIVERED, RECENT),
        "queued": make_message(status=S.QUEUED),
        "old campaign 1": ended(S.DELIVERED, OLD, campaign_id=old_campaign.id),
        "old campaign 2": ended(S.FAILED, OLD, campaign_id=old_campaign.id),
        "recent campaign, old row": ended(S.DELIVERED, OLD, campaign_id=recent_campaign.id),
        "running campaign, old row": ended(S.DELIVERED, OLD, campaign_id=running.id),
    }
    for message in rows.values():
        session.add(MessageEvent(message_id=message.id, status=message.status))
    session.add(
        WebhookDelivery(
            id="wh-old", event_id=1, message_id=rows["old delivered"].id, url="u", payload="{}"
        )
    )
    session.add(
        WebhookDelivery(
            id="wh-kept-msg",
            event_id=2,
            message_id=rows["recent delivered"].id,
            url="u",
            payload="{}",
            status="delivered",
            created_at=OLD,
        )
    )
    session.add(
        IdempotencyRecord(
            client_id="c", key="old", request_hash="h", status_code=202, created_at=OLD
        )
    )
    session.add(IdempotencyRecord(client_id="c", key="running", request_hash="h", created_at=OLD))
    session.commit()
    gone = {
        "old delivered",
        "old failed",
        "old expired",
        "old sent, no report",
        "old campaign 1",
        "old campaign 2",
    }
    return {
        "ids": {name: m.id for name, m in rows.items()},
        "gone": gone,
        "campaigns": {
            "old": old_campaign.id,
            "recent": recent_campaign.id,
            "running": running.id,
        },
    }


def run(sessions: sessionmaker[Session], **options: Any) -> Any:
    return prune(sessions, older_than=KEEP, idempotency_ttl=86_400, now=NOW, **options)


def kept_messages(session: Session) -> set[str]:
    session.expire_all()
    return set(session.scalars(select(Message.id)))


def test_prune_deletes_what_ended_before_the_cutoff_and_keeps_the_rest(
    session: Session, sessions: sessionmaker[Session], history: dict[str, Any]
) -> None:
    done = run(sessions)

    ids = history["ids"]
    assert kept_messages(session) == {ids[n] for n in ids if n not in history["gone"]}
    assert (done.messages, done.events, done.campaigns, done.complete) == (6, 6, 1, True)
    assert done.webhooks == 2  # the old message's outbox row, and an old delivered one
    assert done.idempotency_records == 1  # answered and past its TTL; the running one stays
    campaigns = set(session.scalars(select(Campaign.id)))
    assert campaigns == {history["campaigns"]["recent"], history["campaigns"]["running"]}
    events = set(session.scalars(select(MessageEvent.message_id)))
    assert events == kept_messages(session)
    assert set(session.scalars(select(WebhookDelivery.id))) == set()
    assert set(session.scalars(select(IdempotencyRecord.key))) == {"running"}


def test_a_dry_run_counts_what_the_prune_deletes_and_deletes_nothing(
    session: Session, sessions: sessionmaker[Session], history: dict[str, Any]
) -> None:
    before = kept_messages(session)

    counted = run(sessions, dry_run=True)

    assert kept_messages(session) == before
    done = run(sessions)
    fields = ("messages", "events", "webhooks", "campaigns", "idempotency_records")
    assert [getattr(counted, f) for f in fields] == [getattr(done, f) for f in fields]


def test_small_batches_get_everything_and_a_spent_budget_stops_early(
    session: Session, sessions: sessionmaker[Session], history: dict[str, Any]
) -> None:
    stopped = run(sessions, batch_size=2, budget=0)
    assert not stopped.complete and stopped.messages == 0

    done = run(sessions, batch_size=2)

    assert done.complete and done.messages == 6
    assert run(sessions).messages == 0  # nothing left: idempotent
    assert session.scalar(select(func.count()).select_from(Message)) == 5


def test_a_non_positive_age_is_refused(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(ValueError, match="older_than"):
        prune(sessions, older_than=dt.timedelta(0), idempotency_ttl=1, now=NOW)


@pytest.mark.parametrize("straggler", ["unknown", "reported late"])
def test_a_campaign_with_a_message_still_inside_the_retention_is_kept_whole(
    session: Session,
    sessions: sessionmaker[Session],
    make_message: Callable[..., Message],
    make_campaign: Callable[..., Campaign],
    straggler: str,
) -> None:
    """Regression: the campaign's old rows went and the straggler stayed, so its
    counts and report changed under the operator."""
    campaign = make_campaign(status=CampaignStatus.FINISHED, finished_at=OLD)
    make_message(status=S.DELIVERED, finished_at=OLD, campaign_id=campaign.id)
    if straggler == "unknown":
        make_message(status=S.UNKNOWN, sent_at=OLD, campaign_id=campaign.id)
    else:
        make_message(status=S.DELIVERED, sent_at=OLD, finished_at=RECENT, campaign_id=campaign.id)

    counted = run(sessions, dry_run=True)
    done = run(sessions)

    assert (counted.messages, counted.campaigns) == (0, 0)
    assert (done.messages, done.campaigns) == (0, 0)
    assert len(kept_messages(session)) == 2


@pytest.mark.integration
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite: one writer at a time
def test_a_row_a_writer_holds_is_left_for_the_next_run(
    session: Session, sessions: sessionmaker[Session], history: dict[str, Any]
) -> None:
    held = history["ids"]["old delivered"]
    with sessions() as writer:  # e.g. smsq fleet retry re-queueing it
        writer.execute(select(Message.id).where(Message.id == held).with_for_update())

        done = run(sessions)

        writer.rollback()
    assert done.messages == 5
    assert held in kept_messages(session)
    assert run(sessions).messages == 1
