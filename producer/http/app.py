"""The FastAPI application.

``create_app`` is the factory: ``uvicorn --factory producer.http.app:create_app``
serves it with the settings of the environment (``SMSQ_*``). The app owns one
database engine (``producer.http.deps.Database``), made on first use and
disposed at shutdown. Each area of the API is a router of its own module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from producer.http import dlr, redact
from producer.http.deps import Database
from providers.accounts import BrandAccount
from smsq.settings import Settings, get_settings

log = structlog.get_logger("smsq.http")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings if settings is not None else get_settings()
    database = Database(settings.database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            database.dispose()

    app = FastAPI(title="smsq", lifespan=lifespan)
    app.state.settings = settings
    app.state.database = database
    app.include_router(dlr.router)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    redact.install()  # the brand callback key travels in the query string
    _warn_about_callback_keys(settings)
    return app


def _warn_about_callback_keys(settings: Settings) -> None:
    brand = [a for a in settings.providers.values() if isinstance(a, BrandAccount) and a.dlr]
    missing = [a.name for a in brand if a.callback_key is None]
    if missing:
        log.warning(
            "dlr.brand_without_callback_key",
            accounts=missing,
            effect="their delivery reports are refused (403) until callback_key is set",
        )
