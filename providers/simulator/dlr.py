"""Sending the delivery reports the simulator owes.

A real provider retries a callback that fails, for a while, then gives up; so
does this dispatcher: a few attempts with doubling waits on a transport error,
an HTTP 5xx or 429. Another 4xx (a 403 for a wrong callback key) is final:
asking again would get the same answer. Each report ends counted as sent or
failed in the simulator's stats.

The HTTP client is injectable so tests route reports straight into an ASGI
receiver with ``httpx.ASGITransport``; reports are sent concurrently (bounded),
so one slow receiver does not hold back the others.

When it stops (the app's lifespan ends: the simulator going away, as in
``smsq demo``'s outage) it finishes the callbacks it started, as a provider
shutting down would: an attempt on its way gets up to :data:`STOP_GRACE`
seconds to end, and a report not yet tried, or waiting to be tried again, is
owed again (:meth:`Simulator.owe_again`), to go out when the simulator is back.
Cancelling them would cut callbacks in the middle of their body, an error at
the receiver, and lose the reports.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import httpx

from providers.http import make_async_client
from providers.simulator.core import Simulator
from providers.simulator.wire import Report

POLL_INTERVAL = 0.05  # seconds between looks at the reports due
# Seconds an attempt on its way gets to end when the dispatcher stops: longer
# than the client's own timeout (5 s), so none is cut unless the receiver hangs.
STOP_GRACE = 6.0


class DlrDispatcher:
    def __init__(
        self,
        sim: Simulator,
        client: httpx.AsyncClient | None = None,
        *,
        attempts: int = 3,
        backoff: float = 0.5,
        concurrency: int = 50,
        timeout: float = 5.0,
        grace: float = STOP_GRACE,
    ) -> None:
        self.sim = sim
        self._client = client
        self._own_client = client is None
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self.grace = grace
        self._concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[bool]] = set()
        self._stopping = asyncio.Event()

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            # smsq's own client (aiohttp under the httpx API): a few times less
            # CPU per report than httpx's default transport, which matters when
            # the simulator shares a process with smsq (``smsq demo``).
            self._client = make_async_client(
                timeout=self.timeout, max_connections=self._concurrency
            )
        return self._client

    async def deliver(self, report: Report) -> bool:
        """Send one report with retries; count and return whether it arrived.

        Stopping, it starts no attempt: the report is owed again, not counted.
        """
        wait = self.backoff
        ok = False
        for attempt in range(1, self.attempts + 1):
            if self._stopping.is_set():
                self.sim.owe_again(report)
                return False
            retry = await self._attempt(report)
            if retry is None:
                ok = True
                break
            if not retry or attempt == self.attempts:
                break
            with contextlib.suppress(TimeoutError):  # a stop ends the wait
                await asyncio.wait_for(self._stopping.wait(), wait)
            wait *= 2
        self.sim.record_dlr(ok, report.to)
        return ok

    async def _attempt(self, report: Report) -> bool | None:
        """None when delivered, else whether trying again may help."""
        try:
            if report.method == "POST":
                response = await self.client.post(report.url, json=report.payload)
            else:
                url = httpx.URL(report.url).copy_merge_params(report.payload)
                response = await self.client.get(url)
        except httpx.HTTPError:
            return True
        if response.is_success:
            return None
        return response.status_code >= 500 or response.status_code == 429

    async def dispatch(self, reports: Iterable[Report]) -> list[bool]:
        """Send ``reports`` concurrently and wait for all of them."""
        return list(await asyncio.gather(*(self._limited(r) for r in reports)))

    async def dispatch_due(self) -> list[bool]:
        """Send every report due now and wait for them."""
        return await self.dispatch(self.sim.reports_due())

    async def run(self, interval: float = POLL_INTERVAL) -> None:
        """Poll for due reports forever, sending each in the background."""
        try:
            while True:
                for report in self.sim.reports_due():
                    task = asyncio.create_task(self._limited(report))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                await asyncio.sleep(interval)
        finally:
            await self.aclose()

    async def _limited(self, report: Report) -> bool:
        async with self._slots:
            return await self.deliver(report)

    async def aclose(self) -> None:
        """Stop: attempts on their way end (``grace`` seconds at most, then
        they are cancelled), the other reports are owed again; close the
        client if it is ours."""
        self._stopping.set()
        if self._tasks and self.grace > 0:
            await asyncio.wait(list(self._tasks), timeout=self.grace)
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None
