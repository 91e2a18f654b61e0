"""A dead worker's rows are recovered in seconds: never sent -> queued and
enqueued at once, maybe sent -> unknown; a live worker's rows are left alone,
and so is every row claimed before Redis lost its data."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fakeredis
import redis
from sqlalchemy.orm import Session, sessionmaker

from models.status import EventSource, MessageStatus
from models.tables import Message, MessageEvent
from smsq.core.names import owner_key
from smsq.core.settings import Settings
from worker.owners import Owner
from worker.recovery import live_claims, recover, recover_dead_owners
from worker.sweeper import sweep
from worker.unknown_resend import DIED_WHILE_SENDING

S = MessageStatus
NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
LEASE = dt.timedelta(seconds=120)


def registered(store: redis.Redis) -> Owner:
    owner = Owner(store, ttl=10, marks_ttl=600)
    assert owner.beat()
    return owner


def killed(store: redis.Redis, owner: Owner) -> None:
    """What ``kill -9`` leaves: the heartbeat stops and the key runs out."""
    store.delete(owner_key(owner.name))


ClaimRows = Callable[..., list[Message]]


def _claim_rows(make_message: Callable[..., Message]) -> ClaimRows:
    def claim_rows(
        token: str, n: int, *, lease_until: dt.datetime = NOW + LEASE, **fields: Any
    ) -> list[Message]:
        return [
            make_message(
                status=S.SENDING,
                lease_token=token,
                lease_until=lease_until,
                attempts=1,
                **fields,
            )
            for _ in range(n)
        ]

    return claim_rows


def test_a_dead_owners_unsent_rows_go_back_to_queued_and_are_enqueued_otp_first(
    session: Session,
    sessions: sessionmaker[Session],
    make_message: Callable[..., Message],
    redis_client: redis.Redis,
    recording_publisher: Any,
    stored: Callable[[str], dict[str, Any]],
    events: Callable[[str], list[dict[str, Any]]],
) -> None:
    claim_rows = _claim_rows(make_message)
    owner = registered(redis_client)
    token = owner.token()
    campaign_rows = claim_rows(token, 3, kind="campaign")
    otp = claim_rows(owner.token(), 1, kind="otp")[0]
    on_wire = campaign_rows[:1]
    assert owner.mark(token, [m.id for m in on_wire])
    killed(redis_client, owner)

    recovered = recover(
        sessions, store=redis_client, publisher=recording_publisher, batch_size=500, now=NOW
    )

    assert (recovered.requeued, recovered.unknown, recovered.dead_claims) == (3, 1, 2)
    sent_row = stored(on_wire[0].id)
    assert (sent_row["status"], sent_row["attempts"], sent_row["lease_token"]) == (
        S.UNKNOWN,
        1,
        None,
    )
    for message in [*campaign_rows[1:], otp]:
        row = stored(message.id)
        assert (row["status"], row["attempts"], row["lease_token"]) == (S.QUEUED, 0, None)
        assert "died before sending" in (events(message.id)[-1]["detail"] or "")
    # Enqueued at once, the OTP first.
    assert [(queue, sorted(ids)) for ids, queue, _ in recording_publisher.calls] == [
        ("otp", [otp.id]),
        ("campaign", sorted(m.id for m in campaign_rows[1:])),
    ]
    # Nothing is left for a second pass.
    assert recover_dead_owners(session, redis_client, now=NOW).dead_claims == 0


def test_a_live_owners_rows_are_untouched_even_with_an_expired_lease(
    session: Session,
    make_message: Callable[..., Message],
    redis_client: redis.Redis,
    stored: Callable[[str], dict[str, Any]],
) -> None:
    claim_rows = _claim_rows(make_message)
    owner = registered(redis_client)
    rows = claim_rows(owner.token(), 2, lease_until=NOW - dt.timedelta(seconds=30))
    assert recover_dead_owners(session, redis_client, now=NOW).dead_claims == 0
    assert {stored(m.id)["status"] for m in rows} == {S.SENDING}


def test_after_redis_lost_its_data_live_owners_rows_are_not_requeued(
    session: Session,
    make_message: Callable[..., Message],
    redis_client: redis.Redis,
    stored: Callable[[str], dict[str, Any]],
) -> None:
    claim_rows = _claim_rows(make_message)
    owner = registered(redis_client)
    other = registered(redis_client)
    rows = claim_rows(owner.token(), 2)
    redis_client.flushdb()  # restart without persistence: keys and marks are gone
    assert recover_dead_owners(session, redis_client, now=NOW).dead_claims == 0
    other.beat()  # the registry starts a new epoch
    assert recover_dead_owners(session, redis_client, now=NOW).dead_claims == 0
    assert {stored(m.id)["status"] for m in rows} == {S.SENDING}
    # Even if that owner then died, its pre-loss claim only meets the lease rule.
    assert recover_dead_owners(session, redis_client, now=NOW + LEASE).dead_claims == 0
    plan = _sweep(session, redis_client, now=NOW + LEASE + dt.timedelta(seconds=1))
    assert plan.leases_expired == 2
    assert {stored(m.id)["status"] for m in rows} == {S.UNKNOWN}


def _sweep(session: Session, store: redis.Redis, *, now: dt.datetime, patience: float = 900) -> Any:
    return sweep(
        session,
        now=now,
        requeue_after=60,
        unknown_resend_after=300,
        broker_lost=False,
        queue_is_empty=lambda _queue: True,
        resend_providers=(),
        live_claims=live_claims(store),
        live_patience=patience,
    )


def test_a_live_owners_expired_lease_waits_for_the_outcome_patience(
    session: Session,
    make_message: Callable[..., Message],
    redis_client: redis.Redis,
    stored: Callable[[str], dict[str, Any]],
) -> None:
    """The database was away: the worker keeps its outcomes and writes them when it
    comes back; its lease running out meanwhile must not make the rows unknown."""
    claim_rows = _claim_rows(make_message)
    owner = registered(redis_client)
    waiting = claim_rows(owner.token(), 2, lease_until=NOW - dt.timedelta(seconds=60))
    overdue = claim_rows(owner.token(), 1, lease_until=NOW - dt.timedelta(seconds=901))
    legacy = claim_rows("0123456789abcdef", 1, lease_until=NOW - dt.timedelta(seconds=1))
    plan = _sweep(session, redis_client, now=NOW)
    assert plan.leases_expired == 2
    assert {stored(m.id)["status"] for m in waiting} == {S.SENDING}
    assert stored(overdue[0].id)["status"] == S.UNKNOWN
    assert stored(legacy[0].id)["status"] == S.UNKNOWN  # no owner named: the lease rule
    # Its owner dies: the recovery takes the rows (never marked: back to queued).
    killed(redis_client, owner)
    assert recover_dead_owners(session, redis_client, now=NOW).requeued == 2
    assert {stored(m.id)["status"] for m in waiting} == {S.QUEUED}


def test_an_unreachable_registry_leaves_the_plain_lease_rule(
    session: Session,
    make_message: Callable[..., Message],
    redis_client: redis.Redis,
    stored: Callable[[str], dict[str, Any]],
) -> None:
    claim_rows = _claim_rows(make_message)
    owner = registered(redis_client)
    rows = claim_rows(owner.token(), 1, lease_until=NOW - dt.timedelta(seconds=1))
    server = fakeredis.FakeServer()
    server.connected = False
    down = fakeredis.FakeRedis(server=server)
    assert _sweep(session, down, now=NOW).leases_expired == 1
    assert stored(rows[0].id)["status"] == S.UNKNOWN


def test_a_dead_owners_on_wire_rows_are_resent_once_after_the_short_wait_without_a_report(
    session: Session,
    sessions: sessionmaker[Session],
    make_message: Callable[..., Message],
    redis_client: redis.Redis,
    recording_publisher: Any,
    write_providers: Callable[..., Path],
) -> None:
    """Cut by the kill, such a request most likely never left: it is resent
    SMSQ_DEAD_WORKER_RESEND_AFTER after it could last have left (not the 300 s
    of other unknown rows), and only when no delivery report came. The death
    is noticed at least 3/4 of SMSQ_OWNER_TTL after the kill: 30 - 6 = 24 s
    after the recovery."""
    settings = Settings(providers_file=write_providers(), dead_worker_resend_after=30, owner_ttl=8)
    claim_rows = _claim_rows(make_message)
    owner = registered(redis_client)
    token = owner.token()
    rows = claim_rows(token, 3, kind="otp")
    assert owner.mark(token, [m.id for m in rows])
    killed(redis_client, owner)
    other_unknown = make_message(status=S.UNKNOWN, kind="otp", error_detail="read timeout")

    def run(at: dt.datetime) -> dict[str, list[str]]:
        recording_publisher.calls.clear()
        return recover(
            sessions,
            store=redis_client,
            publisher=recording_publisher,
            batch_size=500,
            now=at,
            settings=settings,
        ).resend_unknown

    assert run(NOW) == {}  # now unknown; the wait starts
    reported = rows[0]
    with sessions() as s:
        s.add(MessageEvent(message_id=reported.id, status=S.DELIVERED, source=EventSource.DLR))
        s.commit()
    assert run(NOW + dt.timedelta(seconds=23)) == {}
    due = run(NOW + dt.timedelta(seconds=25))
    assert sorted(due["otp"]) == sorted(m.id for m in rows[1:])  # not the reported one
    assert other_unknown.id not in due["otp"]  # the ordinary rule waits 300 s
    [(ids, queue, _)] = recording_publisher.calls
    assert queue == "otp" and sorted(ids) == sorted(due["otp"])
    assert recording_publisher.tasks[-1][2] == {"resend_unknown": True}


def test_the_sweep_resends_a_dead_owners_unknown_rows_sooner_than_others(
    session: Session, make_message: Callable[..., Message]
) -> None:
    died = make_message(status=S.UNKNOWN, error_detail=DIED_WHILE_SENDING, updated_at=NOW)
    timed_out = make_message(status=S.UNKNOWN, error_detail="read timeout", updated_at=NOW)

    def resent(seconds: float) -> set[str]:
        plan = sweep(
            session,
            now=NOW + dt.timedelta(seconds=seconds),
            requeue_after=60,
            unknown_resend_after=300,
            broker_lost=False,
            queue_is_empty=lambda _q: True,
            resend_providers=["panel"],
            dead_worker_resend_after=30,
        )
        return {i for ids in plan.resend_unknown.values() for i in ids}

    assert resent(10) == set()
    assert resent(31) == {died.id}
    assert resent(301) == {died.id, timed_out.id}
