"""send_batch as an owner of its claims (worker.owners): every request's ids are
marked on the wire before the provider sees them, a worker declared dead sends
nothing, and a mark Redis cannot take gives the rows back unsent."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import fakeredis
import redis
from sqlalchemy.orm import Session, sessionmaker

from models.status import MessageStatus
from models.tables import Message
from providers.simulator import SimRequest, SimResponse
from smsq.core.names import owner_key
from worker.owners import Owner
from worker.recovery import recover_dead_owners
from worker.sending import ERROR_RETRY_DELAY, send_batch

S = MessageStatus


def on_wire_ids(store: redis.Redis) -> set[str]:
    marked: set[str] = set()
    for key in store.scan_iter("smsq:on-wire:*"):
        marked |= {m.decode() for m in store.smembers(key)}
    return marked


def registered(store: redis.Redis) -> Owner:
    owner = Owner(store, ttl=10, marks_ttl=600)
    assert owner.beat()
    return owner


async def test_every_request_is_marked_before_the_provider_sees_it(
    harness: Any, queued: Callable[..., list[Message]], stored: Callable[[str], dict[str, Any]]
) -> None:
    store = fakeredis.FakeRedis()
    # Ten requests in flight at a time: three request groups, each marked in one call.
    ctx = dataclasses.replace(harness.ctx, owner=registered(store), send_concurrency=10)
    unmarked_at_request: list[str] = []
    handle = harness.sim.handle

    def spying(req: SimRequest) -> SimResponse:
        message_id = json.loads(req.body)["transactionId"]
        if message_id not in on_wire_ids(store):
            unmarked_at_request.append(message_id)
        return handle(req)

    harness.sim.handle = spying
    messages = queued(30)
    result = await send_batch(ctx, [m.id for m in messages])
    assert result.written.sent == 30
    assert harness.sim.stats()["accepted"] == 30
    assert unmarked_at_request == []
    # Once the outcomes are stored the marks are not needed any more.
    assert on_wire_ids(store) == set()
    assert {stored(m.id)["status"] for m in messages} == {S.SENT}


async def test_a_worker_declared_dead_sends_nothing_and_its_rows_are_recovered(
    harness: Any,
    queued: Callable[..., list[Message]],
    session: Session,
    stored: Callable[[str], dict[str, Any]],
) -> None:
    """A frozen process that wakes up after the fleet gave up on it must not
    send what the recovery may already have handed to another worker."""
    store = fakeredis.FakeRedis()
    owner = registered(store)
    store.delete(owner_key(owner.name))  # it was unheard of for the TTL
    ctx = dataclasses.replace(harness.ctx, owner=owner)
    messages = queued(5)
    result = await send_batch(ctx, [m.id for m in messages])
    assert result.claimed == 5 and result.written.sent == 0
    assert harness.sim.stats()["requests"]["total"] == 0
    recovered = recover_dead_owners(session, store, now=harness.clock())
    assert recovered.requeued == 5
    assert {(stored(m.id)["status"], stored(m.id)["attempts"]) for m in messages} == {(S.QUEUED, 0)}
    # Under its new name the same process sends them, once.
    assert owner.beat()
    again = await send_batch(ctx, [m.id for m in messages])
    assert again.written.sent == 5
    assert harness.sim.stats()["accepted"] == 5


async def test_a_mark_redis_cannot_take_gives_the_rows_back_unsent(
    harness: Any,
    queued: Callable[..., list[Message]],
    sessions: sessionmaker[Session],
    stored: Callable[[str], dict[str, Any]],
) -> None:
    server = fakeredis.FakeServer()
    owner = registered(fakeredis.FakeRedis(server=server))
    server.connected = False  # Redis went away after the claim
    ctx = dataclasses.replace(harness.ctx, owner=owner)
    messages = queued(3)
    result = await send_batch(ctx, [m.id for m in messages])
    assert result.released == 3
    assert harness.sim.stats()["requests"]["total"] == 0
    assert {(stored(m.id)["status"], stored(m.id)["attempts"]) for m in messages} == {(S.QUEUED, 0)}
    [(ids, queue, countdown)] = harness.enqueued.calls  # enqueued again, a little later
    assert (sorted(ids), queue, countdown) == (
        sorted(m.id for m in messages),
        "transactional",
        ERROR_RETRY_DELAY,
    )
