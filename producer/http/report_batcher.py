"""Group commit for the delivery-report receiver.

A provider sends reports in bursts, thousands a second, one HTTP request
each. Committing each one costs a WAL flush; committing them together costs
one. Each request hands its parsed report to the app's ``ReportBatcher``
and waits for the batch it joined to be committed, so a 2xx still means
"recorded" and nothing acknowledged can be lost.

There is no timer: while one batch is being written (in a thread, the
database calls are blocking) the reports arriving meanwhile gather, and
become the next batch. A lone report is written at once; under load the
batches grow by themselves, up to ``max_batch``.
"""

from __future__ import annotations

import asyncio

import anyio.to_thread
from sqlalchemy.orm import Session, sessionmaker

from providers.report_recording import ReportResult, ReportToRecord, record_reports


class ReportBatcher:
    def __init__(self, sessions: sessionmaker[Session], *, max_batch: int = 500) -> None:
        self.sessions = sessions
        self.max_batch = max_batch
        self._pending: list[tuple[ReportToRecord, asyncio.Future[ReportResult]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, item: ReportToRecord) -> ReportResult:
        """Record ``item`` with whatever else is waiting; raise what recording raised."""
        future: asyncio.Future[ReportResult] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all())
        return await future

    async def _write_all(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            try:
                results = await anyio.to_thread.run_sync(self._write, [i for i, _ in batch])
            except Exception as exc:  # the session could not even be opened
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # the request was cancelled (client went away)
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _write(self, items: list[ReportToRecord]) -> list[ReportResult | Exception]:
        with self.sessions() as session:
            return record_reports(session, items)
