"""Fleet operations: pausing a provider, the status, retry, reconcile, purge.

What an operator relies on: a paused provider's messages stay ``queued`` and
unsent, the status shows what the database and Redis say, a retry moves
exactly the matching rows, and reconcile re-publishes lost work.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.status import CampaignStatus, EventSource, MessageKind, MessageStatus
from models.tables import Campaign, Message, MessageEvent
from providers.base import Rejected
from providers.errors import TransportError
from smsq.core.names import QUEUE_CAMPAIGN, TASK_SEND, paused_key
from smsq.core.publisher import TaskPublisher
from smsq.core.settings import Settings
from worker import fleet
from worker.broker import queue_depth
from worker.provider_health import ProviderHealth, breaker_settings
from worker.sending import send_batch
from worker.throttle import PAUSED_WAIT, TokenBucket, pause_provider, resume_provider

S = MessageStatus
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def settings(db_url: str, write_providers: Callable[..., Path]) -> Settings:
    path = write_providers(panel={"rate": 50, "burst": 20}, brand=True)
    return Settings(database_url=db_url, providers_file=path)


def rows(session: Session, messages: list[Message]) -> list[Message]:
    session.expire_all()
    return [m for m in (session.get(Message, x.id) for x in messages) if m is not None]


# --- pause / resume ----------------------------------------------------------


def test_a_paused_bucket_grants_nothing_and_resume_restores_it(
    redis_client: redis.Redis,
) -> None:
    provider = f"test-{uuid.uuid4().hex[:12]}"
    bucket = TokenBucket(redis_client, provider, rate=10, burst=5)

    assert pause_provider(redis_client, provider) is True
    assert pause_provider(redis_client, provider) is False  # already paused
    paused = bucket.acquire(1)
    assert (paused.granted, paused.wait, paused.paused) == (0, PAUSED_WAIT, True)
    # Another process's bucket object for the same provider sees it too.
    assert TokenBucket(redis_client, provider, rate=10, burst=5).acquire(1).granted == 0
    assert bucket.is_paused()

    assert resume_provider(redis_client, provider) is True
    assert resume_provider(redis_client, provider) is False
    assert bucket.acquire(5).granted == 5  # the full burst: nothing was taken while paused
    assert not bucket.is_paused()
    assert redis_client.exists(paused_key(provider)) == 0


async def test_a_paused_provider_s_messages_stay_queued_and_unsent(
    harness: Any, queued: Callable[..., list[Message]], session: Session
) -> None:
    store = harness.ctx.bucket("panel").client
    pause_provider(store, "panel")
    panel = queued(3)
    brand = queued(2, provider="brand")

    result = await send_batch(harness.ctx, [m.id for m in panel + brand])

    assert result.written.sent == 2 and result.released == 3
    for row in rows(session, panel):
        # Given back: not failed, not counted as an attempt, due again later.
        assert row.status == S.QUEUED and row.attempts == 0
        assert row.retry_at is not None
    assert all(r.status == S.SENT for r in rows(session, brand))
    assert harness.sim.stats()["accepted"] == 2  # the brand ones only
    assert [(sorted(ids), countdown) for ids, _, countdown in harness.enqueued.calls] == [
        (sorted(m.id for m in panel), PAUSED_WAIT)
    ]

    resume_provider(store, "panel")
    harness.clock.advance(PAUSED_WAIT + 1)
    again = await send_batch(harness.ctx, [m.id for m in panel])
    assert again.written.sent == 3
    assert all(r.status == S.SENT and r.attempts == 1 for r in rows(session, panel))


def test_pause_refuses_an_unknown_provider(settings: Settings) -> None:
    store = fakeredis.FakeRedis()
    with pytest.raises(fleet.UnknownProvider, match="known: brand, panel"):
        fleet.pause(settings, store, "nope")
    assert fleet.pause(settings, store, "panel") is True
    assert fleet.resume(settings, store, "panel") is True


# --- status ------------------------------------------------------------------


def test_status_reports_queues_buckets_rates_errors_and_unknown(
    settings: Settings, session: Session, make_message: Callable[..., Message]
) -> None:
    now = dt.datetime.now(dt.UTC)
    for _ in range(3):
        make_message(status=S.SENT, sent_at=now - dt.timedelta(seconds=30))
    make_message(status=S.DELIVERED, sent_at=now - dt.timedelta(minutes=3))
    make_message(status=S.SENT, provider="brand", sent_at=now - dt.timedelta(minutes=10))
    for code in (9, 9, 5):
        make_message(status=S.FAILED, error_code=code, finished_at=now - dt.timedelta(minutes=5))
    make_message(status=S.FAILED, error_code=9, finished_at=now - dt.timedelta(hours=2))
    make_message(status=S.UNKNOWN)
    make_message(status=S.QUEUED, kind=MessageKind.OTP, created_at=now - dt.timedelta(seconds=40))
    make_message(status=S.QUEUED, kind=MessageKind.OTP, created_at=now - dt.timedelta(seconds=5))
    make_message(status=S.QUEUED, retry_at=now + dt.timedelta(minutes=1))  # not due yet
    make_message(status=S.SCHEDULED, send_at=now + dt.timedelta(hours=1))
    store = fakeredis.FakeRedis()
    broker = fakeredis.FakeRedis()
    broker.lpush(QUEUE_CAMPAIGN, "task-1", "task-2")
    pause_provider(store, "panel")

    status = fleet.fleet_status(
        session,
        settings=settings,
        store=store,
        broker=broker,
        workers=lambda: [fleet.WorkerInfo("celery@a", ["otp", "transactional"])],
        now=now,
    )

    assert status.problems == []
    assert status.workers == [fleet.WorkerInfo("celery@a", ["otp", "transactional"])]
    queues = {q.name: q for q in status.queues}
    assert queues["campaign"].depth == 2 and queues["otp"].depth == 0
    assert queues["otp"].due_messages == 2
    otp_age = queues["otp"].oldest_due_seconds
    assert otp_age is not None and 39 <= otp_age <= 45
    assert queues["transactional"].due_messages == 0
    assert queues["transactional"].oldest_due_seconds is None
    assert status.scheduled.messages == 1
    assert status.unknown == 1
    assert status.sent_per_second_1m == pytest.approx(3 / 60)
    assert status.sent_per_second_5m == pytest.approx(4 / 300)
    providers = {p.name: p for p in status.providers}
    panel = providers["panel"]
    assert panel.paused is True and panel.configured_rate == 50 and panel.rate == 50
    assert panel.tokens == 20 and panel.burst == 20
    assert panel.errors_last_hour == {"5": 1, "9": 2}
    assert providers["brand"].paused is False and providers["brand"].errors_last_hour == {}


def test_status_survives_a_broker_that_cannot_be_reached(
    settings: Settings, session: Session
) -> None:
    dead = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )

    def no_workers() -> list[fleet.WorkerInfo]:
        raise ConnectionError("broker down")

    status = fleet.fleet_status(
        session, settings=settings, store=dead, broker=dead, workers=no_workers, now=NOW
    )

    assert status.workers is None
    assert all(q.depth is None for q in status.queues)
    assert all(p.paused is None and p.rate is None for p in status.providers)
    assert any(p.startswith("workers:") for p in status.problems)
    assert any(p.startswith("broker:") for p in status.problems)
    assert any(p.startswith("throttle store:") for p in status.problems)


# --- retry -------------------------------------------------------------------


def test_retry_requeues_only_the_matching_failed_messages(
    session: Session,
    make_message: Callable[..., Message],
    make_campaign: Callable[..., Campaign],
) -> None:
    campaign = make_campaign(status=CampaignStatus.FINISHED, finished_at=NOW)
    out_of_credit = [
        make_message(
            status=S.FAILED,
            error_code=9,
            attempts=1,
            error_detail="no credit",
            finished_at=NOW,
            campaign_id=campaign.id,
            kind=MessageKind.CAMPAIGN,
        )
        for _ in range(3)
    ]
    single = make_message(status=S.FAILED, error_code=9, finished_at=NOW, kind=MessageKind.OTP)
    other_code = make_message(status=S.FAILED, error_code=5, finished_at=NOW)
    delivered = make_message(status=S.DELIVERED, finished_at=NOW)
    flt = fleet.RetryFilter(code=9)

    dry = fleet.find_retryable(session, flt, now=NOW)
    assert (dry.matched, dry.requeued_count) == (4, 0)
    assert all(
        r.status == S.FAILED for r in rows(session, out_of_credit)
    )  # a dry run moves nothing

    later = NOW + dt.timedelta(minutes=5)
    result = fleet.requeue(session, flt, now=later, validity=600)

    assert result.matched == 4 and result.requeued_count == 4
    assert sorted(result.requeued) == ["campaign", "otp"]
    assert result.reopened_campaigns == [campaign.id]
    for row in rows(session, [*out_of_credit, single]):
        assert row.status == S.QUEUED and row.attempts == 0
        assert row.error_code is None and row.error_detail is None and row.finished_at is None
        assert row.expires_at == later + dt.timedelta(seconds=600)
    assert rows(session, [other_code])[0].status == S.FAILED
    assert rows(session, [delivered])[0].status == S.DELIVERED
    reopened = session.get_one(Campaign, campaign.id)
    assert reopened.status == CampaignStatus.RUNNING and reopened.finished_at is None
    events = session.execute(
        select(MessageEvent.status, MessageEvent.source).where(MessageEvent.message_id == single.id)
    ).all()
    assert [tuple(e) for e in events] == [(S.QUEUED, EventSource.OPERATOR)]
    # Nothing left to match: a second run is a no-op.
    assert fleet.requeue(session, flt, now=later).requeued_count == 0


def test_retry_filters_by_campaign_and_since(
    session: Session,
    make_message: Callable[..., Message],
    make_campaign: Callable[..., Campaign],
) -> None:
    campaign = make_campaign(status=CampaignStatus.RUNNING)
    old = make_message(status=S.FAILED, finished_at=NOW - dt.timedelta(hours=3))
    new = make_message(status=S.FAILED, finished_at=NOW)
    in_campaign = make_message(status=S.FAILED, finished_at=NOW, campaign_id=campaign.id)

    since = fleet.RetryFilter(since=NOW - dt.timedelta(hours=1))
    assert fleet.find_retryable(session, since, now=NOW).matched == 2
    by_campaign = fleet.RetryFilter(campaign_id=campaign.id)
    assert fleet.requeue(session, by_campaign, now=NOW).requeued_count == 1
    assert [r.status for r in rows(session, [old, new, in_campaign])] == [
        S.FAILED,
        S.FAILED,
        S.QUEUED,
    ]


def test_retry_leaves_the_messages_of_a_cancelled_campaign_alone(
    session: Session,
    make_message: Callable[..., Message],
    make_campaign: Callable[..., Campaign],
) -> None:
    # Regression (review): they became queued, and no claim would ever take them.
    cancelled = make_campaign(status=CampaignStatus.CANCELLED, finished_at=NOW)
    stuck = make_message(status=S.FAILED, error_code=9, finished_at=NOW, campaign_id=cancelled.id)
    single = make_message(status=S.FAILED, error_code=9, finished_at=NOW)
    result = fleet.requeue(session, fleet.RetryFilter(code=9), now=NOW)
    assert result.requeued_count == 1
    assert rows(session, [stuck])[0].status == S.FAILED
    assert rows(session, [single])[0].status == S.QUEUED


def test_retry_refuses_a_status_an_operator_may_not_requeue_from(
    session: Session, make_message: Callable[..., Message]
) -> None:
    delivered = make_message(status=S.DELIVERED, finished_at=NOW)
    with pytest.raises(fleet.RetryNotAllowed, match="delivered"):
        fleet.requeue(session, fleet.RetryFilter(statuses=(S.DELIVERED,)), now=NOW)
    assert rows(session, [delivered])[0].status == S.DELIVERED


# --- reconcile ---------------------------------------------------------------


def test_reconcile_republishes_queued_work_after_the_broker_lost_its_data(
    settings: Settings,
    sessions: sessionmaker[Session],
    make_message: Callable[..., Message],
    recording_publisher: Any,
) -> None:
    now = dt.datetime.now(dt.UTC)
    lost = [make_message(status=S.QUEUED) for _ in range(3)]
    broker = fakeredis.FakeRedis()  # empty: no marker, as after a FLUSHALL
    published = recording_publisher.tasks
    publish = recording_publisher

    report = fleet.reconcile(sessions, settings=settings, broker=broker, publisher=publish, now=now)

    assert report.broker_lost is True and report.requeued == 3
    assert report.tasks_published == 1
    assert [(t, sorted(a[0]), q) for t, a, _, q in published] == [
        (TASK_SEND, sorted(m.id for m in lost), "transactional")
    ]
    # The marker is back: a second run right away finds nothing lost.
    again = fleet.reconcile(sessions, settings=settings, broker=broker, publisher=publish, now=now)
    assert again.broker_lost is False and again.requeued == 0


# --- purge -------------------------------------------------------------------


@pytest.mark.integration
def test_purge_empties_one_queue_and_leaves_the_others(real_redis_url: str) -> None:
    client = redis.Redis.from_url(real_redis_url)
    client.flushdb()
    enqueuer = TaskPublisher.for_broker(real_redis_url)
    try:
        for _ in range(3):
            assert enqueuer.send_messages(["m"], queue="campaign")
        assert enqueuer.send_messages(["o"], queue="otp")

        assert fleet.purge_queue(enqueuer.app, "campaign") == 3

        assert queue_depth(client, "campaign") == 0
        assert queue_depth(client, "otp") == 1
        with pytest.raises(ValueError, match="unknown queue"):
            fleet.purge_queue(enqueuer.app, "nope")
    finally:
        enqueuer.close()
        client.flushdb()
        client.close()


def test_status_shows_each_provider_s_circuit_breaker_and_since_when(
    settings: Settings, session: Session
) -> None:
    store = fakeredis.FakeRedis()
    health = ProviderHealth(store, "panel", breaker_settings(settings))
    refused = Rejected("m", TransportError("connection refused"))
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    health.record([refused] * settings.breaker_failures)

    status = fleet.fleet_status(
        session, settings=settings, store=store, broker=store, workers=lambda: [], now=NOW
    )

    providers = {p.name: p for p in status.providers}
    panel, brand = providers["panel"], providers["brand"]
    assert panel.breaker == "open" and panel.breaker_since is not None
    assert before <= panel.breaker_since <= dt.datetime.now(dt.UTC)
    assert panel.breaker_reason is not None and "transport" in panel.breaker_reason
    assert (brand.breaker, brand.breaker_since, brand.breaker_reason) == ("closed", None, None)
    assert any("circuit breaker open" in p for p in status.problems)
