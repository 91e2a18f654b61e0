"""send_batch: what the provider received and what the rows say afterwards."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from models.status import CampaignStatus, MessageStatus
from models.tables import Campaign, Message, MessageEvent
from worker.sending import send_batch

S = MessageStatus


def rows(session: Session, messages: list[Message]) -> list[Message]:
    session.expire_all()
    return [m for m in (session.get(Message, x.id) for x in messages) if m is not None]


async def test_queued_messages_are_sent_once(
    harness: Any, queued: Callable[..., list[Message]], session: Session
) -> None:
    messages = queued(30)
    ids = [m.id for m in messages]
    result = await send_batch(harness.ctx, ids)
    assert result.claimed == 30 and result.written.sent == 30
    for row in rows(session, messages):
        assert row.status == S.SENT
        assert row.provider_message_id == row.id  # panelsms transactionId is our id
        assert row.attempts == 1 and row.sent_at is not None and row.lease_until is None
    # The same task delivered again: nothing to claim, no second request.
    again = await send_batch(harness.ctx, ids)
    assert again.claimed == 0
    stats = harness.sim.stats()
    assert stats["accepted"] == 30 and stats["duplicates"] == []
    events = session.scalars(select(MessageEvent.status).where(MessageEvent.message_id == ids[0]))
    assert list(events) == ["sending", "sent"]


async def test_brand_packs_numbers_into_few_requests(
    harness: Any, queued: Callable[..., list[Message]], session: Session
) -> None:
    messages = queued(1200, provider="brand", text="Same text for all")
    result = await send_batch(harness.ctx, [m.id for m in messages])
    assert result.written.sent == 1200
    assert harness.sim.stats()["requests"]["total"] == 3  # 500 + 500 + 200 numbers
    sms_ids = {r.provider_message_id for r in rows(session, messages)}
    assert len(sms_ids) == 1200


async def test_campaign_requests_fill_up_under_a_busy_throttle(
    harness: Any,
    queued: Callable[..., list[Message]],
    make_campaign: Callable[..., Campaign],
    session: Session,
) -> None:
    """Regression (issue 12): batches sharing a throttled brand account sent
    whatever the bucket held at that instant, about one number per request."""
    harness.rates["brand"] = (400, 100)
    campaign = make_campaign(status=CampaignStatus.RUNNING)
    batches = [
        queued(100, provider="brand", kind="campaign", campaign_id=campaign.id, text="Sale")
        for _ in range(4)
    ]

    results = await asyncio.gather(
        *(send_batch(harness.ctx, [m.id for m in batch]) for batch in batches)
    )

    assert sum(r.written.sent for r in results) == 400
    assert harness.sim.stats()["requests"]["total"] == 4  # full requests, 100 numbers each


async def test_a_full_request_never_takes_the_otp_reserve(
    harness: Any,
    queued: Callable[..., list[Message]],
    make_campaign: Callable[..., Campaign],
) -> None:
    """Regression (review): a fill larger than burst - reserve waited for a
    full bucket and took the reserve with it."""
    harness.rates["brand"] = (100, 100)  # the defaults: reserve 10, fill 100
    harness.ctx.otp_reserve = 0.1
    campaign = make_campaign(status=CampaignStatus.RUNNING)
    numbers = queued(300, provider="brand", kind="campaign", campaign_id=campaign.id, text="Sale")
    sending = asyncio.create_task(send_batch(harness.ctx, [m.id for m in numbers]))
    await asyncio.sleep(0.5)  # the campaign is waiting for its next request's tokens

    otp = queued(1, provider="brand", kind="otp", text="Your code is 123456")
    started = time.perf_counter()
    assert (await send_batch(harness.ctx, [otp[0].id])).written.sent == 1
    assert time.perf_counter() - started < 0.15
    assert (await sending).written.sent == 300
    assert harness.sim.stats()["requests"]["total"] <= 5  # 90 numbers or more each


async def test_a_slowed_bucket_fills_requests_at_its_rate_instead_of_giving_rows_back(
    harness: Any,
    queued: Callable[..., list[Message]],
    make_campaign: Callable[..., Campaign],
) -> None:
    """Regression (review): sized for the full rate, the first request's wait
    passed the 5 s limit on a bucket slowed by code 7, and the batch was given back."""
    harness.rates["brand"] = (100, 20)
    bucket = harness.ctx.bucket("brand")
    bucket.penalty_hold = 0  # three answers, three cuts
    for _ in range(3):
        bucket.penalize()  # factor 0.125: 12.5 tokens a second
    campaign = make_campaign(status=CampaignStatus.RUNNING)
    numbers = queued(30, provider="brand", kind="campaign", campaign_id=campaign.id, text="Sale")

    result = await send_batch(harness.ctx, [m.id for m in numbers])

    assert (result.written.sent, result.released) == (30, 0)


async def test_a_rate_raised_while_a_group_sends_applies_to_its_next_grant(
    harness: Any, queued: Callable[..., list[Message]]
) -> None:
    """Regression (issue 12, the demo): a group kept the bucket it started
    with, so a raised rate reached the sending only after the batches
    already claimed (seconds of work) were done at the old one."""
    harness.rates["panel"] = (2, 1)  # 20 messages would take about 10 s
    messages = queued(20, text="Sale")
    sending = asyncio.create_task(send_batch(harness.ctx, [m.id for m in messages]))
    await asyncio.sleep(0.6)
    harness.rates["panel"] = (1000, 1000)
    result = await asyncio.wait_for(sending, 2)
    assert result.written.sent == 20


async def test_an_otp_does_not_wait_to_fill_a_request(
    harness: Any, queued: Callable[..., list[Message]]
) -> None:
    harness.rates["brand"] = (1, 3)  # 3 tokens now, then one a second
    messages = queued(3, provider="brand", kind="otp", text="Your code is 123456")
    result = await asyncio.wait_for(send_batch(harness.ctx, [m.id for m in messages]), 2)
    assert result.written.sent == 3


async def test_an_otp_finds_the_reserve_while_a_campaign_saturates_its_account(
    harness: Any,
    queued: Callable[..., list[Message]],
    make_campaign: Callable[..., Campaign],
) -> None:
    """The campaign's batches keep the bucket empty but for the OTP reserve, so
    the OTP gets a token at once instead of queueing for the next (200 ms)."""
    harness.rates["panel"] = (5, 4)  # one token every 200 ms
    harness.ctx.otp_reserve = 0.5  # 2 tokens (at most half the burst)
    campaign = make_campaign(status=CampaignStatus.RUNNING)
    batches = [queued(6, kind="campaign", campaign_id=campaign.id) for _ in range(2)]
    otps = queued(2, kind="otp", text="Your code is 123456")
    sending = [asyncio.create_task(send_batch(harness.ctx, [m.id for m in b])) for b in batches]
    await asyncio.sleep(1.0)  # the campaign has drained what it may take

    took = []
    for otp in otps:
        started = time.perf_counter()
        result = await send_batch(harness.ctx, [otp.id])
        took.append(time.perf_counter() - started)
        assert result.written.sent == 1

    assert max(took) < 0.15
    assert sum(r.written.sent for r in await asyncio.gather(*sending)) == 12


async def test_permanent_error_fails_with_the_code(
    harness: Any, queued: Callable[..., list[Message]], session: Session
) -> None:
    harness.sim.config.patch({"barred_prefixes": ["4915550"]})
    [message] = queued(1)
    await send_batch(harness.ctx, [message.id])
    [row] = rows(session, [message])
    assert row.status == S.FAILED and row.error_code == 11
    assert row.error_detail == "Destination barred" and row.finished_at is not None
    assert harness.enqueued.calls == []


async def test_queue_full_is_retried_later_without_holding_the_slot(
    harness: Any, queued: Callable[..., list[Message]], session: Session
) -> None:
    harness.sim.config.patch({"queue_full_ratio": 1.0, "retry_after": 2})
    [message] = queued(1)
    await send_batch(harness.ctx, [message.id])
    [row] = rows(session, [message])
    assert row.status == S.QUEUED and row.error_code == 6 and row.attempts == 1
    assert row.retry_at is not None and row.retry_at >= harness.clock.now + dt.timedelta(seconds=2)
    [(ids, queue, countdown)] = harness.enqueued.calls
    assert ids == [message.id] and queue == "transactional" and countdown is not None
    assert countdown >= (row.retry_at - harness.clock.now).total_seconds()

    # Not claimable before retry_at: a duplicate early task sends nothing.
    assert (await send_batch(harness.ctx, [message.id])).claimed == 0
    harness.sim.config.patch({"queue_full_ratio": 0.0})
    harness.clock.advance(countdown)
    await send_batch(harness.ctx, [message.id])
    [row] = rows(session, [message])
    assert row.status == S.SENT and row.attempts == 2


async def test_throttled_answer_slows_the_bucket(
    harness: Any, queued: Callable[..., list[Message]]
) -> None:
    harness.sim.config.patch({"rate_limit": 1})
    messages = queued(3)
    result = await send_batch(harness.ctx, [m.id for m in messages])
    assert result.written.retry_codes.get("7", 0) >= 1
    assert harness.buckets["panel"].state().factor < 1.0


async def test_attempt_cap_gives_up_with_the_last_code(
    harness: Any, queued: Callable[..., list[Message]], session: Session
) -> None:
    harness.sim.config.patch({"queue_full_ratio": 1.0})
    [message] = queued(1, attempts=4)  # the policy allows 5
    await send_batch(harness.ctx, [message.id])
    [row] = rows(session, [message])
    assert row.status == S.FAILED and row.error_code == 6 and row.attempts == 5


async def test_validity_passed_means_expired_and_not_sent(
    harness: Any, queued: Callable[..., list[Message]], session: Session
) -> None:
    past = harness.clock.now - dt.timedelta(seconds=1)
    [message] = queued(1, expires_at=past)
    result = await send_batch(harness.ctx, [message.id])
    assert result.expired_unsent == 1 and result.claimed == 0
    [row] = rows(session, [message])
    assert row.status == S.EXPIRED
    assert harness.sim.stats()["requests"]["total"] == 0


async def test_a_retry_past_validity_expires(
    harness: Any, queued: Callable[..., list[Message]], session: Session
) -> None:
    harness.sim.config.patch({"queue_full_ratio": 1.0, "retry_after": 30})
    [message] = queued(1, expires_at=harness.clock.now + dt.timedelta(seconds=10))
    await send_batch(harness.ctx, [message.id])
    [row] = rows(session, [message])
    assert row.status == S.EXPIRED and row.error_code == 6


async def test_no_answer_leaves_the_message_unknown(
    harness: Any, queued: Callable[..., list[Message]], session: Session
) -> None:
    harness.sim.config.patch({"hang_ratio": 1.0})
    [message] = queued(1)
    await send_batch(harness.ctx, [message.id])
    [row] = rows(session, [message])
    assert row.status == S.UNKNOWN and harness.enqueued.calls == []
    # The one resend, with the same transactionId.
    harness.sim.config.patch({"hang_ratio": 0.0})
    result = await send_batch(harness.ctx, [message.id], resend_unknown=True)
    assert result.written.sent == 1
    assert harness.sim.stats()["per_transaction"] == {message.id: 1}
    assert (await send_batch(harness.ctx, [message.id], resend_unknown=True)).claimed == 0


async def test_not_before_send_at(harness: Any, queued: Callable[..., list[Message]]) -> None:
    [message] = queued(1, send_at=harness.clock.now + dt.timedelta(seconds=5))
    assert (await send_batch(harness.ctx, [message.id])).claimed == 0
    harness.clock.advance(5)
    assert (await send_batch(harness.ctx, [message.id])).written.sent == 1


async def test_paused_campaign_sends_nothing_and_finishes_when_done(
    harness: Any,
    queued: Callable[..., list[Message]],
    make_campaign: Callable[..., Campaign],
    session: Session,
) -> None:
    campaign = make_campaign(status=CampaignStatus.PAUSED)
    messages = queued(5, campaign_id=campaign.id, kind="campaign")
    ids = [m.id for m in messages]
    assert (await send_batch(harness.ctx, ids)).claimed == 0
    campaign.status = CampaignStatus.RUNNING
    session.commit()
    assert (await send_batch(harness.ctx, ids)).written.sent == 5
    session.expire_all()
    done = session.get(Campaign, campaign.id)
    assert done is not None and done.status == CampaignStatus.FINISHED


async def test_no_tokens_soon_enough_gives_rows_back(
    harness: Any, queued: Callable[..., list[Message]], session: Session
) -> None:
    harness.rates["panel"] = (0.1, 2)  # 2 at once, then one every 10 s
    messages = queued(5)
    result = await send_batch(harness.ctx, [m.id for m in messages])
    assert result.written.sent == 2 and result.released == 3
    statuses = sorted(r.status for r in rows(session, messages))
    assert statuses == ["queued", "queued", "queued", "sent", "sent"]
    released = [r for r in rows(session, messages) if r.status == S.QUEUED]
    assert all(r.attempts == 0 and r.retry_at is not None for r in released)
    assert sorted(harness.enqueued.ids) == sorted(r.id for r in released)


async def test_segments_take_one_token_each(
    harness: Any, queued: Callable[..., list[Message]]
) -> None:
    harness.rates["panel"] = (0.01, 6)
    messages = queued(3, text="x" * 400)  # 3 parts each: 9 tokens, 6 available
    result = await send_batch(harness.ctx, [m.id for m in messages])
    assert result.written.sent == 2 and result.released == 1
    assert harness.sim.stats()["accepted"] == 6


async def test_rows_the_sweeper_took_are_not_sent_by_the_slow_batch(
    harness: Any, queued: Callable[..., list[Message]], session: Session
) -> None:
    import asyncio

    from sqlalchemy import update

    harness.rates["panel"] = (2, 1)  # one now, then one every 0.5 s
    harness.ctx.lease = 0.3  # renewed every 0.1 s
    messages = queued(3)
    task = asyncio.create_task(send_batch(harness.ctx, [m.id for m in messages]))
    await asyncio.sleep(0.2)
    # The sweeper decided the last one's lease expired: it owns it now.
    session.execute(update(Message).where(Message.id == messages[2].id).values(status=S.UNKNOWN))
    session.commit()
    await task
    sent = harness.sim.stats()["per_transaction"]
    assert messages[2].id not in sent
    assert set(sent) == {messages[0].id, messages[1].id}


async def test_a_failing_group_keeps_what_was_sent_and_gives_the_rest_back(
    harness: Any, queued: Callable[..., list[Message]], session: Session
) -> None:
    """Regression: one group's error used to leave the whole batch in 'sending'."""
    real_bucket = harness.ctx.bucket

    def bucket(provider: str) -> Any:
        if provider == "brand":
            raise ConnectionError("throttle store down")
        return real_bucket(provider)

    harness.ctx.bucket = bucket
    panel = queued(3)
    brand = queued(3, provider="brand")
    result = await send_batch(harness.ctx, [m.id for m in panel + brand])
    assert result.written.sent == 3 and result.released == 3
    assert {r.status for r in rows(session, panel)} == {S.SENT}
    back = rows(session, brand)
    assert {r.status for r in back} == {S.QUEUED} and all(r.attempts == 0 for r in back)
    assert sorted(harness.enqueued.ids) == sorted(m.id for m in brand)


async def test_an_unknown_otp_past_its_validity_is_not_resent(
    harness: Any, queued: Callable[..., list[Message]]
) -> None:
    """Regression: the one resend ignored validity and sent a stale code."""
    [message] = queued(
        1, status=S.UNKNOWN, kind="otp", expires_at=harness.clock.now - dt.timedelta(seconds=1)
    )
    assert (await send_batch(harness.ctx, [message.id], resend_unknown=True)).claimed == 0
    assert harness.sim.stats()["requests"]["total"] == 0


async def test_an_unknown_message_of_a_finished_campaign_is_still_resent_once(
    harness: Any,
    queued: Callable[..., list[Message]],
    make_campaign: Callable[..., Campaign],
) -> None:
    """Regression: a campaign finishes while outcomes are unknown; the resend must still go."""
    campaign = make_campaign(status=CampaignStatus.FINISHED)
    [message] = queued(1, status=S.UNKNOWN, campaign_id=campaign.id, kind="campaign")
    assert (await send_batch(harness.ctx, [message.id], resend_unknown=True)).written.sent == 1


async def test_a_worker_that_wakes_after_losing_its_rows_neither_renews_nor_writes_them(
    harness: Any, queued: Callable[..., list[Message]], session: Session
) -> None:
    """A frozen worker's rows were taken and resent by another claim: hands off."""
    from providers.base import Rejected
    from providers.errors import QueueFull
    from worker.claims import claim, renew_lease
    from worker.outcomes import record_outcomes

    [message] = queued(1)
    now = harness.clock.now
    [mine] = claim(session, [message.id], now=now, lease=1, token="frozen")
    session.commit()
    # The sweeper found the lease expired; the resend claimed it for someone else.
    session.execute(
        update(Message).where(Message.id == message.id).values(status=S.UNKNOWN, lease_token=None)
    )
    session.commit()
    claim(session, [message.id], now=now, lease=60, token="other", resend_unknown=True)
    session.commit()
    assert renew_lease(session, [message.id], now=now, lease=60, token="frozen") == set()
    record_outcomes(
        session,
        [(mine, Rejected(message.id, QueueFull("late")))],
        now=now,
        policy=harness.ctx.policy,
        token="frozen",
    )
    session.commit()
    [row] = rows(session, [message])
    assert row.status == S.SENDING and row.lease_token == "other"  # untouched


class DatabaseAwayForWrites:
    """Sessions whose commit fails ``failures`` times after the claim's commit,
    as a database that went away while the batch was on the wire would."""

    def __init__(self, sessions: Any, failures: int) -> None:
        self.sessions = sessions
        self.failures = failures
        self.commits = 0

    def __call__(self) -> Session:
        session: Session = self.sessions()
        commit = session.commit

        def failing_commit() -> None:
            self.commits += 1
            if self.commits > 1 and self.failures > 0:  # the first commit is the claim's
                self.failures -= 1
                session.rollback()
                raise OperationalError("COMMIT", None, ConnectionError("server closed"))
            commit()

        session.commit = failing_commit  # type: ignore[method-assign]
        return session


async def test_outcomes_are_kept_and_written_when_the_database_comes_back(
    harness: Any, queued: Callable[..., list[Message]], session: Session
) -> None:
    messages = queued(5)
    away = DatabaseAwayForWrites(harness.ctx.sessions, failures=2)
    ctx = dataclasses.replace(harness.ctx, sessions=away)
    result = await send_batch(ctx, [m.id for m in messages])
    assert away.failures == 0  # both failed writes happened
    assert result.written.sent == 5
    for row in rows(session, messages):
        assert (row.status, row.attempts, row.lease_token) == (S.SENT, 1, None)
    stats = harness.sim.stats()
    assert stats["accepted"] == 5 and stats["duplicates"] == []  # never sent again
    events = session.scalars(
        select(MessageEvent.status).where(MessageEvent.message_id == messages[0].id)
    )
    assert list(events) == ["sending", "sent"]  # the failed writes left nothing behind


async def test_outcomes_written_after_the_sweeper_made_the_rows_unknown_still_land(
    harness: Any, queued: Callable[..., list[Message]], session: Session
) -> None:
    """The lease ran out while the database was away and the sweeper, back first,
    made the rows unknown: the kept outcome still moves them to sent."""
    messages = queued(2)
    real = harness.ctx.sessions

    class SweptMeanwhile(DatabaseAwayForWrites):
        def __call__(self) -> Session:
            if self.failures == 0 and self.commits == 2:  # after the failed write
                with real() as s:
                    s.execute(
                        update(Message)
                        .where(Message.id.in_([m.id for m in messages]))
                        .values(status=S.UNKNOWN, lease_token=None, lease_until=None)
                    )
                    s.commit()
            return super().__call__()

    ctx = dataclasses.replace(harness.ctx, sessions=SweptMeanwhile(real, failures=1))
    await send_batch(ctx, [m.id for m in messages])
    assert [r.status for r in rows(session, messages)] == [S.SENT, S.SENT]


async def test_outcomes_are_given_up_after_the_patience(
    harness: Any, queued: Callable[..., list[Message]], session: Session
) -> None:
    messages = queued(1)
    away = DatabaseAwayForWrites(harness.ctx.sessions, failures=100)
    ctx = dataclasses.replace(harness.ctx, sessions=away, outcome_patience=0.5)
    with pytest.raises(OperationalError):
        await send_batch(ctx, [m.id for m in messages])
    [row] = rows(session, messages)
    assert row.status == S.SENDING  # the sweeper resolves it (lease, then unknown)
