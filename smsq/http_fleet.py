"""``GET /v1/fleet``: the fleet's status for dashboards, as ``smsq fleet status --json``;
``GET /v1/fleet/events``: accounts down and up, pauses, as ``smsq fleet events --json``.

It lives in ``smsq/`` because it reads the worker's side (queues, buckets,
workers), and ``producer/`` may not import ``worker/``; ``smsq.api_app``
composes it with the producer's app. Any valid API key may read it (it holds
no message text, number or credential: provider names, rates and counts).

Asking the workers (Celery ``inspect``) waits up to a second for their
answers, so a dashboard should poll every few seconds, not faster.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Callable
from typing import Annotated, Any

import redis
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder

from producer.errors import Unavailable
from producer.http.auth import CurrentClient
from producer.http.deps import REDIS_TIMEOUT, AppSettings, DbSession, app_producer, app_redis
from smsq.core.publisher import TaskPublisher
from worker import fleet, fleet_events

router = APIRouter(tags=["fleet"])
_lock = threading.Lock()

Workers = Callable[[], list[fleet.WorkerInfo]]


def _broker(app: FastAPI) -> redis.Redis | None:
    """The broker's Redis (queue depths), made on first use; None for another broker."""
    if not hasattr(app.state, "fleet_broker"):
        with _lock:
            if not hasattr(app.state, "fleet_broker"):
                url = app.state.settings.effective_broker_url
                app.state.fleet_broker = (
                    redis.Redis.from_url(
                        url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT
                    )
                    if url.startswith(("redis://", "rediss://"))
                    else None
                )
    broker: redis.Redis | None = app.state.fleet_broker
    return broker


def _workers(app: FastAPI) -> Workers | None:
    """How to ask the workers: ``app.state.fleet_workers`` if set (tests), else
    Celery ``inspect`` through the producer's broker connection."""
    found: Workers | None = getattr(app.state, "fleet_workers", None)
    if found is not None:
        return found
    enqueuer = app_producer(app).enqueuer
    if isinstance(enqueuer, TaskPublisher):
        celery_app = enqueuer.app
        return lambda: fleet.inspect_workers(celery_app)
    return None


def close_fleet_resources(app: FastAPI) -> None:
    broker: redis.Redis | None = getattr(app.state, "fleet_broker", None)
    if broker is not None:
        broker.close()
    app.state.fleet_broker = None


@router.get("/v1/fleet")
def get_fleet(
    request: Request, client: CurrentClient, session: DbSession, settings: AppSettings
) -> dict[str, Any]:
    """Workers, queues, provider buckets, send rates, errors by code, unknown count."""
    app = request.app
    status = fleet.fleet_status(
        session,
        settings=settings,
        store=app_redis(app),
        broker=_broker(app),
        workers=_workers(app),
        now=dt.datetime.now(dt.UTC),
    )
    encoded: dict[str, Any] = jsonable_encoder(dataclasses.asdict(status))
    return encoded


@router.get("/v1/fleet/events")
def get_fleet_events(
    request: Request,
    client: CurrentClient,
    settings: AppSettings,
    since: Annotated[
        dt.datetime | None, Query(description="only events after this time (ISO 8601, with zone)")
    ] = None,
    provider: Annotated[str | None, Query(description="only this account")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="at most this many, newest")] = 50,
) -> dict[str, Any]:
    """Provider accounts going down and up (circuit breaker), paused and resumed; oldest first."""
    store = app_redis(request.app)
    try:
        events = fleet_events.list_events(
            store, settings.routes, since=since, account=provider, limit=limit
        )
    except redis.RedisError:
        raise Unavailable("throttle store (Redis)") from None
    encoded: dict[str, Any] = jsonable_encoder({"events": events})
    return encoded
