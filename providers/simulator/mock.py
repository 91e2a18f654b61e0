"""The simulator as an httpx transport: unit tests without a server.

``httpx.MockTransport`` calls one handler from both its sync and async paths,
and an async handler only works with ``AsyncClient``. The transport here
overrides both paths instead, so the same object serves ``httpx.Client``
(waiting with ``time.sleep``) and ``httpx.AsyncClient`` (``asyncio.sleep``).
A hang raises ``httpx.ReadTimeout`` at once: what the client would see after
its read timeout, without making the test wait for it.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from providers.simulator.core import Simulator
from providers.simulator.wire import SimRequest, SimResponse


class SimulatorTransport(httpx.MockTransport):
    """Routes every request to ``sim.handle``; ``sleep=False`` skips latency."""

    def __init__(self, sim: Simulator, *, sleep: bool = True) -> None:
        # The base class's handler answers without latency; both request
        # paths below are overridden to wait as the client kind requires.
        super().__init__(lambda request: to_httpx_response(self._call(request)))
        self.sim = sim
        self.sleep = sleep

    def _call(self, request: httpx.Request) -> SimResponse:
        answer = self.sim.handle(to_sim_request(request))
        if answer.hang:
            raise httpx.ReadTimeout("simulated provider never answered", request=request)
        return answer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        answer = self._call(request)
        if self.sleep and answer.delay > 0:
            time.sleep(answer.delay)
        return to_httpx_response(answer)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        answer = self._call(request)
        if self.sleep and answer.delay > 0:
            await asyncio.sleep(answer.delay)
        return to_httpx_response(answer)


def mock_transport(sim: Simulator, *, sleep: bool = True) -> httpx.MockTransport:
    """A transport for ``httpx.Client`` or ``httpx.AsyncClient`` that answers as ``sim``."""
    return SimulatorTransport(sim, sleep=sleep)


def to_sim_request(request: httpx.Request) -> SimRequest:
    return SimRequest(
        method=request.method,
        path=request.url.path,
        query=request.url.params.multi_items(),
        headers=request.headers,
        body=request.content,
    )


def to_httpx_response(answer: SimResponse) -> httpx.Response:
    return httpx.Response(answer.status, headers=answer.headers, content=answer.body)
