"""What routes get from the application: settings, a DB session, the producer.

The app owns one engine and sessionmaker, made on first use from
``settings.database_url`` (so an app built in a test or by ``uvicorn
--factory`` works without its lifespan having run) and disposed when the
app shuts down. Routes doing DB work are plain ``def`` so FastAPI runs them
in its threadpool; each request gets its own session.

``app.state.producer`` is the app's :class:`producer.api.Producer` (on the
app's engine, with the broker's task publisher); it is made on first use like the
engine, and a test may set its own (with a recording publisher) before the
first request. ``app.state.redis`` (the rate limiter's and ``/readyz``'s
Redis client) works the same way. :func:`install_state` sets these up on a
new app; :func:`close_state` closes them at shutdown.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Annotated

import redis
from fastapi import Depends, FastAPI, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from models.db import make_engine, make_sessionmaker
from producer.api import Producer
from smsq.core.publisher import TaskPublisher
from smsq.core.settings import Settings

# Redis answers in well under a millisecond; a Redis that does not answer in
# this time is treated as down (the rate limiter lets requests through).
REDIS_TIMEOUT = 0.5

_state_lock = threading.Lock()


class Database:
    """One engine and sessionmaker per app, created lazily, thread-safely."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._sessionmaker: sessionmaker[Session] | None = None

    @property
    def engine(self) -> Engine:
        return self._make()[0]

    @property
    def session_factory(self) -> sessionmaker[Session]:
        return self._make()[1]

    def _make(self) -> tuple[Engine, sessionmaker[Session]]:
        with self._lock:
            if self._engine is None or self._sessionmaker is None:
                self._engine = make_engine(self.url)
                self._sessionmaker = make_sessionmaker(self._engine)
            return self._engine, self._sessionmaker

    def dispose(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
            self._engine = None
            self._sessionmaker = None


# Dependencies without I/O are ``async def``: FastAPI runs a plain ``def``
# dependency in its threadpool, a thread hop per request for nothing.
def install_state(app: FastAPI, settings: Settings) -> None:
    """The app's settings and its resources, each made on first use."""
    app.state.settings = settings
    app.state.database = Database(settings.database_url)
    app.state.producer = None  # made on first use: app_producer
    app.state.redis = None  # made on first use: app_redis


def close_state(app: FastAPI) -> None:
    """Close the producer, the Redis client and the engine (shutdown, tests)."""
    producer = app.state.producer
    app.state.producer = None
    if producer is not None:
        producer.close()
    client = app.state.redis
    app.state.redis = None
    if client is not None:
        client.close()
    database: Database = app.state.database
    database.dispose()


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def get_session(database: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    with database.session_factory() as session:
        yield session


AppSettings = Annotated[Settings, Depends(get_app_settings)]
DbSession = Annotated[Session, Depends(get_session)]


def app_producer(app: FastAPI) -> Producer:
    """The app's producer, made on first use (see the module docstring)."""
    found: Producer | None = getattr(app.state, "producer", None)
    if found is None:
        with _state_lock:
            found = getattr(app.state, "producer", None)
            if found is None:
                settings: Settings = app.state.settings
                database: Database = app.state.database
                found = Producer(
                    settings,
                    database.session_factory,
                    TaskPublisher.for_broker(settings.effective_broker_url),
                )
                app.state.producer = found
    return found


def app_redis(app: FastAPI) -> redis.Redis:
    """The app's Redis client (rate limits, readiness), made on first use."""
    found: redis.Redis | None = getattr(app.state, "redis", None)
    if found is None:
        with _state_lock:
            found = getattr(app.state, "redis", None)
            if found is None:
                settings: Settings = app.state.settings
                found = redis.Redis.from_url(
                    settings.redis_url,
                    socket_connect_timeout=REDIS_TIMEOUT,
                    socket_timeout=REDIS_TIMEOUT,
                )
                app.state.redis = found
    return found


async def get_producer(request: Request) -> Producer:
    return app_producer(request.app)


ProducerDep = Annotated[Producer, Depends(get_producer)]
