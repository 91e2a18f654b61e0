"""The HTTP API as served: ``uvicorn --factory smsq.api_app:create_app`` (``smsq api``).

The one place the application is composed. ``producer.http`` holds the
producer's parts (routers for messages, campaigns, stop list, delivery
reports, the panelsms drop-in, health and metrics; the middleware; the
dependencies and the resources they make on first use); ``smsq.http_fleet``
holds ``GET /v1/fleet``, which reads the worker's side and so cannot live in
``producer/`` (it may not import ``worker/``). Here, where importing both is
allowed, they become one app.

Around the routes, outermost first: request metrics, request limits
(413/415, :mod:`producer.http.request_shape`), then ``Idempotency-Key`` handling for
POSTs under ``/v1/`` (:mod:`producer.http.idempotency`). Every error answer
has one JSON shape (:mod:`producer.http.errors`). The app's resources (engine,
producer, Redis clients) are made on first use and closed at shutdown
(:func:`close_app_resources`). While the app is served (its lifespan), a
thread applies the delivery reports the receiver queued in Redis to the
database (:mod:`producer.report_applier`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from producer.http import (
    campaigns,
    deps,
    dlr,
    errors,
    health,
    messages,
    metrics,
    panelsms_dropin,
    redact,
    stoplist,
)
from producer.http.idempotency import IdempotencyMiddleware
from producer.http.request_shape import RequestLimits
from providers.accounts import BrandAccount
from smsq import http_fleet
from smsq.core import logs
from smsq.core.settings import Settings, get_settings

log = structlog.get_logger("smsq.http")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API on ``settings`` (default: the environment's ``SMSQ_*``)."""
    settings = settings if settings is not None else get_settings()
    logs.configure_from(settings)  # once per process; SMSQ_LOG_LEVEL / SMSQ_LOG_JSON

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Reports only arrive here, so every API process applies them too
        # (one consumer group: any number of processes share the stream).
        stop_applier = dlr.start_report_applier(app)
        try:
            yield
        finally:
            stop_applier()
            close_app_resources(app)

    app = FastAPI(title="smsq", lifespan=lifespan)
    deps.install_state(app, settings)
    errors.install(app)
    # add_middleware wraps: the last added runs first.
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(RequestLimits, settings=settings)
    app.add_middleware(metrics.RequestMetrics)  # outermost: it times the 413s too
    # Routes are matched in order: delivery reports, the busiest, come first.
    app.include_router(dlr.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(messages.router)
    app.include_router(campaigns.router)
    app.include_router(stoplist.router)
    app.include_router(panelsms_dropin.router)
    app.include_router(http_fleet.router)

    redact.install()  # the brand callback key travels in the query string
    _warn_about_callback_keys(settings)
    return app


def close_app_resources(app: FastAPI) -> None:
    """Close what the app made: producer, Redis clients, engine (shutdown, tests)."""
    http_fleet.close_fleet_resources(app)
    deps.close_state(app)


def _warn_about_callback_keys(settings: Settings) -> None:
    brand = [a for a in settings.providers.values() if isinstance(a, BrandAccount) and a.dlr]
    missing = [a.name for a in brand if a.callback_key is None]
    if missing:
        log.warning(
            "dlr.brand_without_callback_key",
            accounts=missing,
            effect="their delivery reports are refused (403) until callback_key is set",
        )
