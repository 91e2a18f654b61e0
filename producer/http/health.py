"""``GET /healthz`` (the process answers) and ``GET /readyz`` (it can work).

``/readyz`` runs ``SELECT 1`` on the database and ``PING`` on Redis, each
with a short timeout, and answers 200 ``{"status": "ready", "database":
"ok", "redis": "ok"}``, or 503 with ``"status": "not_ready"`` and
``"failed"`` for the one that did not answer. The answer never carries a URL,
a host or an error text (they may hold credentials); the log line has the
error's type. A load balancer should route on ``/readyz`` and a process
supervisor restart on ``/healthz``.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from producer.http.deps import Database, app_redis

router = APIRouter(tags=["health"])
log = structlog.get_logger("smsq.http")

CHECK_TIMEOUT = 2.0  # seconds, each check


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    database: Database = request.app.state.database
    app = request.app

    def database_ok() -> None:
        with database.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def redis_ok() -> None:
        app_redis(app).ping()

    results = {
        "database": await _check("database", database_ok),
        "redis": await _check("redis", redis_ok),
    }
    failed = [name for name, result in results.items() if result != "ok"]
    if failed:
        body: dict[str, object] = {"status": "not_ready", **results, "failed": failed}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ready", **results})


async def _check(name: str, probe: Callable[[], None]) -> str:
    try:
        with anyio.fail_after(CHECK_TIMEOUT):
            # abandon_on_cancel: a hung connect must not hold the answer.
            await anyio.to_thread.run_sync(probe, abandon_on_cancel=True)
    except TimeoutError:
        log.warning("readyz.failed", check=name, error="timeout")
        return "timeout"
    except Exception as exc:
        log.warning("readyz.failed", check=name, error=type(exc).__name__)
        return "failed"
    return "ok"
