"""Owners of claims: which worker process holds a claim, whether it is alive,
and which of its rows may have reached the provider.

A claim used to be owned for a lease (``SMSQ_SENDING_LEASE``, 120 s); a row
left ``sending`` by a killed process waited for the lease, then for the
unknown-resend (300 s). Now each worker process is an *owner* with a key in
Redis that its heartbeat thread refreshes every quarter of ``SMSQ_OWNER_TTL``
(10 s), and a claim's lease token names it: ``<owner>:<epoch>:<nonce>``
(30 characters; the column holds 32). Before each request goes out, its ids
are added to the claim's *on-wire* set (``on_wire.lua``, one round trip per
request, as cheap as the token bucket's). So when an owner's key is gone, the
recovery step (``worker.recovery``) knows within seconds which of its rows
certainly never left (back to ``queued``) and which may have (``unknown``).

Why a TTL and not Celery telling the main process that a child died: a TTL
also covers a whole host that died or was cut off (its main process tells
nobody), a frozen process, and workers run in threads (``smsq demo``); and it
needs no state in the main process, which may itself be the one killed.

**Trust.** A key's *presence* proves its owner was alive within the TTL. Its
*absence* proves death only if Redis has not lost its data since the claim:
the registry has an *epoch*, a random id set when missing (after a restart
without persistence, a ``FLUSHALL``), and each claim carries the epoch its
owner last saw. A missing key counts as death only for claims of the current
epoch; older claims fall back to the plain lease rule (``worker.sweeper``).

**Fence.** An owner declared dead must not send afterwards what the recovery
gave to another worker (a frozen process that wakes up, one cut off from Redis
for longer than the TTL). So marking is refused once the owner's key is gone
within the claim's epoch, and the request does not go out; and an owner whose
key expired never registers again under the same name (``owner_heartbeat.lua``):
it takes a new one, and its old claims stay fenced.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import weakref
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib.resources import files
from typing import Final

import redis
import structlog
from redis.commands.core import Script

from smsq.core.names import OWNERS_EPOCH_KEY, on_wire_key, owner_key

log = structlog.get_logger("smsq.worker")

_HEARTBEAT_LUA: Final = (files("worker") / "owner_heartbeat.lua").read_text(encoding="utf-8")
_ON_WIRE_LUA: Final = (files("worker") / "on_wire.lua").read_text(encoding="utf-8")
_scripts: weakref.WeakKeyDictionary[redis.Redis, tuple[Script, Script]] = (
    weakref.WeakKeyDictionary()
)


def _scripts_for(client: redis.Redis) -> tuple[Script, Script]:
    scripts = _scripts.get(client)
    if scripts is None:
        scripts = _scripts[client] = (
            client.register_script(_HEARTBEAT_LUA),
            client.register_script(_ON_WIRE_LUA),
        )
    return scripts


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True, slots=True)
class ClaimToken:
    """A lease token that names its owner and the registry epoch of its claim."""

    owner: str
    epoch: str
    nonce: str

    def __str__(self) -> str:
        return f"{self.owner}:{self.epoch}:{self.nonce}"

    @classmethod
    def parse(cls, token: str) -> ClaimToken | None:
        """None for a token without an owner (made while Redis was unreachable,
        or by an older smsq): only the lease rule applies to its rows."""
        parts = token.split(":")
        return cls(*parts) if len(parts) == 3 and all(parts) else None


class Owner:
    """This process as an owner of claims: its name, its heartbeat, its marks.

    ``start`` registers at once (so the first claim already names its owner)
    and then refreshes from a daemon thread; ``stop`` ends the thread and lets
    the key go. Thread-safe: the heartbeat thread replaces the identity as one
    tuple, which sending threads read.
    """

    def __init__(self, store: redis.Redis, *, ttl: float, marks_ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self.marks_ttl = marks_ttl
        self._identity: tuple[str, str | None] = (_new_owner(), None)  # (owner, epoch seen)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._failing = False

    @property
    def name(self) -> str:
        return self._identity[0]

    @property
    def epoch(self) -> str | None:
        """The epoch of the last heartbeat; None until one succeeded."""
        return self._identity[1]

    def start(self) -> None:
        """Register now (once), then keep the key fresh from a daemon thread."""
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self.beat()
                self._thread = threading.Thread(target=self._run, name="smsq-owner", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=self.ttl)
        owner, epoch = self._identity
        if epoch is not None:
            with contextlib.suppress(redis.RedisError):  # else it expires within the TTL
                self.store.delete(owner_key(owner))

    def _run(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            self.beat()

    def beat(self) -> bool:
        """One heartbeat; True when the registry holds this owner now."""
        heartbeat, _ = _scripts_for(self.store)
        for _ in range(2):  # the second time under a new name, if the first was declared dead
            owner, seen = self._identity
            try:
                epoch = _text(
                    heartbeat(
                        keys=[owner_key(owner), OWNERS_EPOCH_KEY],
                        args=[seen or "", int(self.ttl * 1000), secrets.token_hex(3)],
                    )
                )
            except redis.RedisError as exc:
                if not self._failing:
                    log.warning("owner heartbeat failed", owner=owner, error=type(exc).__name__)
                self._failing = True
                return False
            if self._failing:
                log.info("owner heartbeat back", owner=owner)
                self._failing = False
            if epoch is not None:
                self._identity = (owner, epoch)
                return True
            # Declared dead (frozen, or cut off from Redis longer than the TTL):
            # its claims stay fenced; new claims go out under a new name.
            log.warning("owner expired: taking a new name", owner=owner)
            self._identity = (_new_owner(), None)
        return False

    def token(self) -> str:
        """A lease token for a new claim: names this owner once it is registered."""
        owner, epoch = self._identity
        nonce = secrets.token_hex(6)
        return str(ClaimToken(owner, epoch, nonce)) if epoch is not None else secrets.token_hex(8)

    def mark(self, token: str, ids: Collection[str]) -> bool:
        """Record ``ids`` as on the wire before their request goes out.

        False: refused, the owner of the claim was declared dead, so the
        request must not go out. Raises ``redis.RedisError`` when Redis cannot
        be reached: the rows must then be given back unsent.
        """
        claim = ClaimToken.parse(token)
        if claim is None or not ids:
            return True  # no owner named: nobody judges these rows by owner
        _, on_wire = _scripts_for(self.store)
        marked = on_wire(
            keys=[owner_key(claim.owner), OWNERS_EPOCH_KEY, on_wire_key(token)],
            args=[claim.epoch, int(self.marks_ttl * 1000), *ids],
        )
        return bool(marked)

    def forget(self, token: str) -> None:
        """The claim's rows left ``sending``: its marks are no longer needed."""
        if ClaimToken.parse(token) is None:
            return
        with contextlib.suppress(redis.RedisError):  # else the set expires on its own
            self.store.delete(on_wire_key(token))


def _new_owner() -> str:
    return secrets.token_hex(5)


# --- what the recovery asks -------------------------------------------------------------


class Verdict(StrEnum):
    ALIVE = "alive"  # the owner's key is there
    DEAD = "dead"  # gone, and the claim is of the current epoch
    UNKNOWN = "unknown"  # no owner named, or Redis lost its data since the claim


def judge(store: redis.Redis, tokens: Iterable[str]) -> dict[str, Verdict]:
    """The verdict on each claim's owner, from one atomic read of the registry."""
    parsed = {token: ClaimToken.parse(token) for token in tokens}
    owners = sorted({claim.owner for claim in parsed.values() if claim is not None})
    if not owners:
        return dict.fromkeys(parsed, Verdict.UNKNOWN)
    with store.pipeline(transaction=True) as pipe:
        pipe.get(OWNERS_EPOCH_KEY)
        for owner in owners:
            pipe.exists(owner_key(owner))
        epoch_raw, *present = pipe.execute()
    epoch = _text(epoch_raw)
    alive = {owner for owner, here in zip(owners, present, strict=True) if here}
    verdicts: dict[str, Verdict] = {}
    for token, claim in parsed.items():
        if claim is None:
            verdicts[token] = Verdict.UNKNOWN
        elif claim.owner in alive:
            verdicts[token] = Verdict.ALIVE
        elif epoch is not None and claim.epoch == epoch:
            verdicts[token] = Verdict.DEAD
        else:
            verdicts[token] = Verdict.UNKNOWN
    return verdicts


def on_wire(store: redis.Redis, tokens: Collection[str]) -> Mapping[str, set[str]]:
    """The ids each claim marked as on the wire."""
    if not tokens:
        return {}
    ordered = list(tokens)
    with store.pipeline(transaction=False) as pipe:
        for token in ordered:
            pipe.smembers(on_wire_key(token))
        members = pipe.execute()
    return {
        token: {m.decode() if isinstance(m, bytes) else str(m) for m in ids}
        for token, ids in zip(ordered, members, strict=True)
    }
