"""A dead worker's rows are recovered in seconds: never sent -> queued and
enqueued at once, maybe sent -> unknown; a live worker's rows are left alone,
and so is every row claimed before Redis lost its data."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import fakeredis
import redis
from sqlalchemy.orm import Session, sessionmaker

from models.status import MessageStatus
from models.tables import Message
from smsq.core.names import owner_key
from worker.owners import Owner
from worker.recovery import live_claims, recover, recover_dead_owners
from worker.sweeper import sweep

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
