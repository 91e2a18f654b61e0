"""Per-process resources of a worker: DB engine, Redis, HTTP client, adapters,
token buckets and the event loop the async sending runs on.

Built lazily on first use in each process and thrown away after a fork
(``worker_process_init`` calls :func:`reset_runtime`), so a prefork child never
shares a socket, a connection pool or an aiohttp session with its parent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Callable, Coroutine
from functools import cached_property
from typing import Any, TypeVar

import httpx
import redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from models.db import make_engine, make_sessionmaker
from providers.base import Adapter
from providers.http import make_async_client
from providers.registry import make_adapter
from smsq.settings import Settings, get_settings
from worker.retry_policy import RetryPolicy
from worker.sending import Enqueue, SendContext
from worker.throttle import TokenBucket

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where installed: the HTTP client's I/O costs measurably less CPU."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Runtime:
    def __init__(self, settings: Settings, enqueue: Enqueue) -> None:
        self.settings = settings
        self.enqueue = enqueue
        self.loop = new_event_loop()
        self._buckets: dict[str, TokenBucket] = {}
        self._client: httpx.AsyncClient | None = None

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.database_url)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_sessionmaker(self.engine)

    @cached_property
    def store(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.redis_url)

    @cached_property
    def broker_redis(self) -> redis.Redis | None:
        url = self.settings.effective_broker_url
        if not url.startswith(("redis://", "rediss://", "unix://")):
            return None
        return redis.Redis.from_url(url)

    @cached_property
    def adapters(self) -> dict[str, Adapter]:
        s = self.settings
        return {
            name: make_adapter(account, public_url=s.public_url, max_parts=s.max_parts)
            for name, account in s.providers.items()
        }

    @cached_property
    def policy(self) -> RetryPolicy:
        s = self.settings
        return RetryPolicy(base=s.retry_base, cap=s.retry_cap, max_attempts=s.max_attempts)

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

    def send_context(self) -> SendContext:
        if self._client is None:
            # Created inside the loop that will use it (aiohttp binds to it).
            self._client = self.run(self._make_client())
        return SendContext(
            sessions=self.sessions,
            client=self._client,
            adapters=self.adapters,
            bucket=self.bucket,
            enqueue=self.enqueue,
            policy=self.policy,
            lease=self.settings.sending_lease,
            send_concurrency=self.settings.send_concurrency,
        )

    async def _make_client(self) -> httpx.AsyncClient:
        return make_async_client(max_connections=self.settings.send_concurrency)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def close(self) -> None:
        if self._client is not None:
            self.run(self._client.aclose())
            self._client = None
        self.loop.close()
        if "engine" in self.__dict__:
            self.engine.dispose()


# One runtime per thread: its event loop can run one batch at a time, so each
# thread of a thread pool (or of the in-process demo) needs its own. A prefork
# child or a solo worker has one thread, hence one runtime per process.
_local = threading.local()
# Every runtime made here, held until close_runtimes(): a thread that ends
# would otherwise drop its runtime to the garbage collector, unclosed.
_made: list[Runtime] = []
_enqueue_factory: Callable[[], Enqueue] | None = None


def configure(enqueue_factory: Callable[[], Enqueue]) -> None:
    """Tell the runtime how to enqueue (the Celery app does, at import)."""
    global _enqueue_factory
    _enqueue_factory = enqueue_factory


def get_runtime() -> Runtime:
    runtime: Runtime | None = getattr(_local, "runtime", None)
    if runtime is None:
        if _enqueue_factory is None:
            raise RuntimeError("worker.runtime.configure() was not called (import worker.app)")
        runtime = _local.runtime = Runtime(get_settings(), _enqueue_factory())
        _made.append(runtime)
    return runtime


def reset_runtime() -> None:
    """Forget the parent's resources after a fork (never close them: they are the parent's)."""
    _local.runtime = None
    _made.clear()


def close_runtimes() -> None:
    """Close every runtime this process made, once the threads using them have
    stopped (a process embedding workers in threads, such as ``smsq demo``)."""
    _local.runtime = None
    while _made:
        _made.pop().close()
