"""The resources of one worker process: DB engine, Redis, HTTP clients, adapters,
token buckets, the webhook outbox's cursor, the task publisher, and the event
loops the async sending runs on.

A :class:`Runtime` is made from a ``Settings`` object on first use (never at
import) and owned by :class:`ProcessRuntime`, which forgets it after a fork
(``worker_process_init``), so a prefork child never shares a socket, a
connection pool or an aiohttp session with its parent.

Everything is shared by the process's threads except the event loop and the
async HTTP client bound to it: a loop runs one batch at a time, so each thread
of a thread pool (or of the in-process demo) has its own :class:`SendLoop`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import httpx
import redis

from models.db import make_engine, make_sessionmaker
from providers.base import Adapter
from providers.http import make_async_client
from providers.registry import make_adapter
from smsq.core.publisher import Publisher
from smsq.core.settings import Settings
from worker.owners import Owner
from worker.provider_health import ProviderHealth, breaker_settings
from worker.retry_policy import RetryPolicy
from worker.routing import Router
from worker.sending import SendContext
from worker.throttle import TokenBucket
from worker.webhooks.outbox import OutboxCursor
from worker.webhooks.sender import make_client

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where installed: the HTTP client's I/O costs measurably less CPU."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class SendLoop:
    """One thread's event loop and the async HTTP client bound to it."""

    def __init__(self, max_connections: int) -> None:
        self.loop = new_event_loop()
        self._max_connections = max_connections
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            # Created inside the loop that will use it (aiohttp binds to it).
            self._client = self.run(self._make_client())
        return self._client

    async def _make_client(self) -> httpx.AsyncClient:
        return make_async_client(max_connections=self._max_connections)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        if self._client is not None:
            self.run(self._client.aclose())
            self._client = None
        self.loop.close()


class Runtime:
    """A worker process's clients and caches, made from its settings.

    Making one opens nothing: engines, Redis clients and HTTP clients connect
    on their first request.
    """

    def __init__(self, settings: Settings, publisher: Publisher) -> None:
        s = self.settings = settings
        self.publisher = publisher
        self.engine = make_engine(s.database_url)
        self.sessions = make_sessionmaker(self.engine)
        self.store = redis.Redis.from_url(s.redis_url)
        url = s.effective_broker_url
        self.broker_redis = (
            redis.Redis.from_url(url)
            if url.startswith(("redis://", "rediss://", "unix://"))
            else None
        )
        self.adapters: dict[str, Adapter] = {
            name: make_adapter(account, public_url=s.public_url, max_parts=s.max_parts)
            for name, account in s.providers.items()
        }
        self.router = Router(s.routes)  # its round-robin state lives as long as the process
        self.policy = RetryPolicy(base=s.retry_base, cap=s.retry_cap, max_attempts=s.max_attempts)
        self.webhook_client = make_client()
        # Status events at or below it are all made into deliveries (worker.webhooks.outbox).
        self.outbox_cursor = OutboxCursor()
        self._buckets: dict[str, TokenBucket] = {}
        self._health: dict[str, ProviderHealth] = {}
        self.breaker = breaker_settings(s)
        # This process as the owner of its claims; its heartbeat starts with the first batch.
        self.owner = Owner(
            redis.Redis.from_url(
                s.redis_url, socket_timeout=s.owner_ttl / 4, socket_connect_timeout=s.owner_ttl / 4
            ),
            ttl=s.owner_ttl,
            # Longer than a claim may stay 'sending' (renewed lease, then the outcome write).
            marks_ttl=s.sending_lease + s.outcome_write_patience + 60,
        )
        self._local = threading.local()
        self._loops: list[SendLoop] = []
        self._lock = threading.Lock()

    def bucket(self, provider: str) -> TokenBucket:
        account = self.settings.providers[provider]
        cached = self._buckets.get(provider)
        # Rebuilt when the account's rate or burst changed, so a new rate
        # applies at the next call (the bucket's state lives in Redis).
        if cached is None or (cached.rate, cached.burst) != (account.rate, account.burst):
            s = self.settings
            self._buckets[provider] = TokenBucket(
                self.store,
                provider,
                rate=account.rate,
                burst=account.burst,
                decrease=s.throttle_decrease,
                recovery=s.throttle_recovery,
                min_factor=s.throttle_min_factor,
            )
        return self._buckets[provider]

    def health(self, provider: str) -> ProviderHealth:
        """The provider's circuit breaker (its state lives in Redis)."""
        health = self._health.get(provider)
        if health is None:
            health = self._health[provider] = ProviderHealth(self.store, provider, self.breaker)
        return health

    def send_loop(self) -> SendLoop:
        """This thread's loop, made on its first use."""
        loop: SendLoop | None = getattr(self._local, "loop", None)
        if loop is None:
            loop = self._local.loop = SendLoop(self.settings.send_concurrency)
            with self._lock:
                self._loops.append(loop)
        return loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.send_loop().run(coro)

    def send_context(self) -> SendContext:
        self.owner.start()
        return SendContext(
            sessions=self.sessions,
            client=self.send_loop().client(),
            adapters=self.adapters,
            bucket=self.bucket,
            health=self.health,
            publisher=self.publisher,
            policy=self.policy,
            lease=self.settings.sending_lease,
            send_concurrency=self.settings.send_concurrency,
            fill_wait=self.settings.fill_wait,
            otp_reserve=self.settings.otp_reserve,
            outcome_patience=self.settings.outcome_write_patience,
            owner=self.owner,
            router=self.router,
        )

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def close(self) -> None:
        """Close every thread's loop and the clients, once the threads using them have stopped."""
        with self._lock:
            loops, self._loops = self._loops, []
        for loop in loops:
            loop.close()
        self._local = threading.local()
        self.owner.stop()
        self.owner.store.close()
        self.webhook_client.close()
        self.store.close()
        if self.broker_redis is not None:
            self.broker_redis.close()
        self.engine.dispose()


class ProcessRuntime:
    """The process's one :class:`Runtime`, made on first use by ``make``."""

    def __init__(self, make: Callable[[], Runtime]) -> None:
        self._make = make
        self._runtime: Runtime | None = None
        self._lock = threading.Lock()

    def get(self) -> Runtime:
        runtime = self._runtime
        if runtime is None:
            with self._lock:
                if self._runtime is None:
                    self._runtime = self._make()
                runtime = self._runtime
        return runtime

    def forget(self) -> None:
        """After a fork: drop the parent's resources (never close them: they are the parent's)."""
        self._runtime = None
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the runtime (a process embedding workers in threads, such as ``smsq demo``,
        once they have stopped); the next :meth:`get` makes a new one."""
        with self._lock:
            runtime, self._runtime = self._runtime, None
        if runtime is not None:
            runtime.close()
