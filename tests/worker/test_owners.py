"""The owner registry: a live owner is seen alive, a silent one dead, and after
Redis lost its data nobody is judged dead for claims made before the loss."""

from __future__ import annotations

import time

import fakeredis
import redis

from smsq.core.names import OWNERS_EPOCH_KEY, on_wire_key, owner_key
from worker.owners import ClaimToken, Owner, Verdict, judge, on_wire


def registered(store: redis.Redis, ttl: float = 10.0) -> Owner:
    owner = Owner(store, ttl=ttl, marks_ttl=600)
    assert owner.beat()
    return owner


def test_a_claim_token_names_its_owner_and_epoch_and_fits_the_column(
    redis_client: redis.Redis,
) -> None:
    owner = registered(redis_client)
    token = owner.token()
    claim = ClaimToken.parse(token)
    assert claim is not None
    assert (claim.owner, claim.epoch) == (owner.name, owner.epoch)
    assert len(token) <= 32  # messages.lease_token is String(32)
    assert owner.token() != token


def test_an_unregistered_owner_makes_tokens_only_the_lease_rule_judges(
    redis_client: redis.Redis,
) -> None:
    owner = Owner(redis_client, ttl=10, marks_ttl=600)  # no heartbeat yet (Redis was down)
    token = owner.token()
    assert ClaimToken.parse(token) is None
    assert owner.mark(token, ["m1"])  # nothing to fence: nobody judges it by owner
    assert judge(redis_client, [token]) == {token: Verdict.UNKNOWN}


def test_an_owner_unheard_of_for_its_ttl_is_dead(redis_client: redis.Redis) -> None:
    alive = registered(redis_client)
    silent = registered(redis_client, ttl=1.0)
    mine, theirs = alive.token(), silent.token()
    assert judge(redis_client, [mine, theirs]) == {mine: Verdict.ALIVE, theirs: Verdict.ALIVE}
    time.sleep(1.2)  # the silent owner's key expires
    assert judge(redis_client, [mine, theirs]) == {mine: Verdict.ALIVE, theirs: Verdict.DEAD}


def test_marks_are_what_the_recovery_reads_and_go_once_the_claim_is_done(
    redis_client: redis.Redis,
) -> None:
    owner = registered(redis_client)
    token = owner.token()
    assert owner.mark(token, ["a", "b"])
    assert owner.mark(token, ["c"])
    assert on_wire(redis_client, [token]) == {token: {"a", "b", "c"}}
    assert 0 < int(redis_client.pttl(on_wire_key(token))) <= 600_000
    owner.forget(token)
    assert on_wire(redis_client, [token]) == {token: set()}


def test_an_owner_declared_dead_cannot_mark_and_comes_back_under_a_new_name(
    redis_client: redis.Redis,
) -> None:
    owner = registered(redis_client)
    old_name, old_token = owner.name, owner.token()
    redis_client.delete(owner_key(old_name))  # its key expired (frozen, cut off)
    assert judge(redis_client, [old_token]) == {old_token: Verdict.DEAD}
    # Its rows may be another worker's now: the request must not go out.
    assert not owner.mark(old_token, ["a"])
    assert on_wire(redis_client, [old_token]) == {old_token: set()}
    # The next heartbeat does not revive the old name (that would lift the fence).
    assert owner.beat()
    assert owner.name != old_name
    assert judge(redis_client, [old_token]) == {old_token: Verdict.DEAD}
    assert not owner.mark(old_token, ["a"])
    new_token = owner.token()
    assert owner.mark(new_token, ["b"])
    assert judge(redis_client, [new_token]) == {new_token: Verdict.ALIVE}


def test_after_redis_lost_its_data_no_owner_is_judged_dead_for_older_claims(
    redis_client: redis.Redis,
) -> None:
    owner = registered(redis_client)
    other = registered(redis_client)
    token = owner.token()
    redis_client.flushdb()  # a restart without persistence
    assert judge(redis_client, [token]) == {token: Verdict.UNKNOWN}
    # Another process's heartbeat starts a new epoch; the older claim stays unjudged.
    assert other.beat()
    assert redis_client.get(OWNERS_EPOCH_KEY) is not None
    assert judge(redis_client, [token]) == {token: Verdict.UNKNOWN}
    # The live owner may still send what it claimed before the loss...
    assert owner.mark(token, ["a"])
    # ...and registers again under its own name (it was never declared dead).
    name = owner.name
    assert owner.beat()
    assert owner.name == name
    assert judge(redis_client, [token]) == {token: Verdict.ALIVE}
    fresh = owner.token()
    assert ClaimToken.parse(fresh) == ClaimToken(name, str(owner.epoch), fresh.split(":")[2])


def test_the_heartbeat_thread_keeps_an_owner_alive_and_stop_lets_it_go(
    redis_client: redis.Redis,
) -> None:
    owner = Owner(redis_client, ttl=1.0, marks_ttl=600)
    owner.start()
    token = owner.token()
    time.sleep(1.5)  # longer than the TTL: only the thread's refreshes keep it
    assert judge(redis_client, [token]) == {token: Verdict.ALIVE}
    owner.stop()
    assert judge(redis_client, [token]) == {token: Verdict.DEAD}


def test_an_unreachable_registry_is_not_a_verdict() -> None:
    server = fakeredis.FakeServer()
    server.connected = False
    down = fakeredis.FakeRedis(server=server)
    owner = Owner(down, ttl=10, marks_ttl=600)
    assert not owner.beat()
    assert ClaimToken.parse(owner.token()) is None
