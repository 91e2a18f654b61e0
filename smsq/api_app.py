"""The HTTP API as served: ``uvicorn --factory smsq.api_app:create_app``.

``producer.http.app.create_app`` is the producer's API (messages, campaigns,
stop list, delivery reports, health); ``producer/`` may not import the
worker's code, so the routes that read the fleet (``smsq.http_fleet``) are
added here, where importing both sides is allowed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from producer.http.app import create_app as create_producer_app
from smsq import http_fleet
from smsq.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    app = create_producer_app(settings)
    app.include_router(http_fleet.router)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[Any]:
        # The producer's lifespan closes its resources; the fleet's broker client after it.
        try:
            async with inner(application) as state:
                yield state
        finally:
            http_fleet.close_fleet_resources(application)

    app.router.lifespan_context = lifespan
    return app
