"""The simulator over HTTP: a Starlette app around :meth:`Simulator.handle`.

One catch-all route hands every request to the core, which does its own
routing: the benchmarks push thousands of requests a second through here, so
the per-request path is one body read, one call and one response, with no
validation layer in between. The app adds only what the pure core cannot do:
sleeping the answer's ``delay``, holding a hanging request open until the
client gives up, and, as a lifespan task, sending the delivery reports owed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from providers.simulator.core import Simulator
from providers.simulator.dlr import POLL_INTERVAL, DlrDispatcher
from providers.simulator.wire import SimRequest

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
HANG_TIMEOUT = 300.0  # a hanging request is answered 504 after this, if still connected


def create_app(
    sim: Simulator,
    *,
    dlr_client: httpx.AsyncClient | None = None,
    send_reports: bool = True,
    poll_interval: float = POLL_INTERVAL,
    hang_timeout: float = HANG_TIMEOUT,
) -> Starlette:
    """An ASGI app serving ``sim``; reports go out through ``dlr_client`` if given."""

    async def endpoint(request: Request) -> Response:
        body = await request.body()
        answer = sim.handle(
            SimRequest(
                request.method,
                request.scope["path"],
                request.query_params.multi_items(),
                request.headers,
                body,
            )
        )
        if answer.hang:
            await _until_disconnected(request, hang_timeout)
            return Response(status_code=504)
        if answer.delay > 0:
            await asyncio.sleep(answer.delay)
        return Response(answer.body, answer.status, answer.headers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = None
        if send_reports:
            dispatcher = DlrDispatcher(sim, dlr_client)
            app.state.dlr_dispatcher = dispatcher
            task = asyncio.create_task(dispatcher.run(poll_interval))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=METHODS)], lifespan=lifespan)
    app.state.simulator = sim
    return app


async def _until_disconnected(request: Request, limit: float) -> None:
    """Wait for the client to hang up (its read timeout), at most ``limit`` seconds.

    The body has been read, so the next ASGI message is the disconnect.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit):
            while (await request.receive())["type"] != "http.disconnect":
                pass
