"""GroupCommit: requests arriving together share a commit; each gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from models.ledger.reports import ReportResult, ReportToRecord, record_reports
from models.status import MessageStatus as S
from models.tables import Message
from producer.http.request_coalescing import GroupCommit
from providers.panelsms.reports import parse_report as parse_panelsms_report


def item(message_id: str, raw: Any = None) -> ReportToRecord:
    body = {"transactionId": message_id, "status": "delivered"}
    return ReportToRecord(parse_panelsms_report(body), raw or body, ["panel"])


def recording_writer(
    sessions: sessionmaker[Session], batches: list[int]
) -> Callable[[list[ReportToRecord]], list[ReportResult | Exception]]:
    def write(items: list[ReportToRecord]) -> list[ReportResult | Exception]:
        batches.append(len(items))
        with sessions() as session:
            return record_reports(session, items)

    return write


async def test_reports_arriving_together_are_written_in_few_batches(
    sessions: sessionmaker[Session], make_message: Callable[..., Message]
) -> None:
    messages = [make_message(provider="panel", status=S.SENT) for _ in range(120)]
    batches: list[int] = []
    group = GroupCommit(recording_writer(sessions, batches), max_batch=50)
    results = await asyncio.gather(*(group.submit(item(m.id)) for m in messages))
    assert all(r.status == S.DELIVERED for r in results)
    assert [r.message_id for r in results] == [m.id for m in messages]
    assert sum(batches) == 120 and max(batches) == 50 and len(batches) <= 4
    with sessions() as session:
        stored = [session.get(Message, m.id) for m in messages]
        assert {m.status for m in stored if m is not None} == {S.DELIVERED}


async def test_a_failing_item_raises_for_its_request_only(
    sessions: sessionmaker[Session], make_message: Callable[..., Message]
) -> None:
    good, other = (make_message(provider="panel", status=S.SENT) for _ in range(2))
    group = GroupCommit(recording_writer(sessions, []))
    results = await asyncio.gather(
        group.submit(item(good.id)),
        group.submit(item(other.id, raw={"not json": object()})),
        return_exceptions=True,
    )
    assert isinstance(results[0], ReportResult) and results[0].status == S.DELIVERED
    assert isinstance(results[1], Exception)


async def test_a_writer_that_fails_outright_fails_every_request_of_the_batch() -> None:
    def broken(items: list[int]) -> list[int | Exception]:
        raise ConnectionError("database down")

    group: GroupCommit[int, int] = GroupCommit(broken)
    with pytest.raises(ConnectionError):
        await group.submit(1)


async def test_requests_do_not_hang_when_the_writer_is_cancelled() -> None:
    # Regression (review): at shutdown a cancelled writer left its requests waiting forever.
    import threading

    release = threading.Event()

    def slow(items: list[int]) -> list[int | Exception]:
        release.wait(5)
        return list(items)

    group: GroupCommit[int, int] = GroupCommit(slow)
    first = asyncio.create_task(group.submit(1))
    await asyncio.sleep(0.05)  # the batch is in the thread
    second = asyncio.create_task(group.submit(2))  # waits for the next batch
    await asyncio.sleep(0.05)
    for writer in list(asyncio.all_tasks()):
        if writer.get_coro().__qualname__.startswith("GroupCommit._write_all"):  # type: ignore[union-attr]
            writer.cancel()
    release.set()
    for request in (first, second):
        with pytest.raises(ConnectionAbortedError):
            await asyncio.wait_for(request, 2)
