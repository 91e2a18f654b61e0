"""Group commit: concurrent HTTP requests coalesced into one database transaction.

A delivery-report burst or a web app's burst of single sends is thousands of
small writes a second, one HTTP request each. Committing each costs a WAL
flush and a round trip per statement; committing them together costs one.
Each request hands its item to the app's ``GroupCommit`` and waits for the
batch it joined to be committed, so a 2xx still means "stored" and nothing
acknowledged can be lost.

There is no timer: while one batch is being written (in a thread: the
database calls block) the items arriving meanwhile gather and become the
next batch. A lone request is written at once; under load the batches grow
by themselves, up to ``max_batch``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

import anyio.to_thread

T = TypeVar("T")
R = TypeVar("R")

Write = Callable[[list[T]], list[R | Exception]]


class GroupCommit(Generic[T, R]):
    """``await submit(item)`` -> the result ``write`` gave for it (or its error, raised).

    ``write`` gets a batch and returns one result or exception per item, in
    order; it commits once for the batch and isolates a bad item itself.
    """

    def __init__(self, write: Write[T, R], *, max_batch: int = 500) -> None:
        self.write = write
        self.max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all())
        return await future

    async def _write_all(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            try:
                results = await anyio.to_thread.run_sync(self.write, [i for i, _ in batch])
            except Exception as exc:  # write itself failed (no session at all)
                results = [exc] * len(batch)
            except BaseException:  # cancelled (shutdown): no waiting request may hang
                for _, future in batch + self._pending:
                    if not future.done():
                        future.set_exception(ConnectionAbortedError("the server is stopping"))
                raise
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # the request was cancelled (client went away)
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
