"""The FastAPI application.

``create_app`` is the factory: ``uvicorn --factory producer.http.app:create_app``
serves it with the settings of the environment (``SMSQ_*``). The app owns one
database engine (``producer.http.deps.Database``), one producer and one Redis
client, each made on first use and closed at shutdown. Each area of the API is
a router of its own module.

Around the routes, outermost first: request limits (413/415,
:mod:`producer.http.request_shape`), then ``Idempotency-Key`` handling for POSTs
under ``/v1/`` (:mod:`producer.http.idempotency`). Every error answer has one
JSON shape (:mod:`producer.http.errors`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from producer.http import (
    campaigns,
    dlr,
    errors,
    health,
    messages,
    metrics,
    panelsms_dropin,
    redact,
    stoplist,
)
from producer.http.deps import Database
from producer.http.idempotency import IdempotencyMiddleware
from producer.http.request_shape import RequestLimits
from providers.accounts import BrandAccount
from smsq import logs
from smsq.settings import Settings, get_settings

log = structlog.get_logger("smsq.http")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings if settings is not None else get_settings()
    logs.configure_from(settings)  # once per process; SMSQ_LOG_LEVEL / SMSQ_LOG_JSON
    database = Database(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            close_app_resources(app)

    app = FastAPI(title="smsq", lifespan=lifespan)
    app.state.settings = settings
    app.state.database = database
    app.state.producer = None  # made on first use: producer.http.deps.app_producer
    app.state.redis = None  # made on first use: producer.http.deps.app_redis
    errors.install(app)
    # add_middleware wraps: the last added runs first.
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(RequestLimits, settings=settings)
    app.add_middleware(metrics.RequestMetrics)  # outermost: it times the 413s too
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(messages.router)
    app.include_router(campaigns.router)
    app.include_router(stoplist.router)
    app.include_router(dlr.router)
    app.include_router(panelsms_dropin.router)

    redact.install()  # the brand callback key travels in the query string
    _warn_about_callback_keys(settings)
    return app


def close_app_resources(app: FastAPI) -> None:
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


def _warn_about_callback_keys(settings: Settings) -> None:
    brand = [a for a in settings.providers.values() if isinstance(a, BrandAccount) and a.dlr]
    missing = [a.name for a in brand if a.callback_key is None]
    if missing:
        log.warning(
            "dlr.brand_without_callback_key",
            accounts=missing,
            effect="their delivery reports are refused (403) until callback_key is set",
        )
