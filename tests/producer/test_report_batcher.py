"""ReportBatcher: concurrent reports share commits, and each gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from models.status import MessageStatus as S
from models.tables import Message
from producer.http.report_batcher import ReportBatcher
from providers.report_recording import ReportResult, ReportToRecord, record_reports
from providers.reports import parse_panelsms_report


def item(message_id: str, status: str = "delivered", raw: Any = None) -> ReportToRecord:
    body = {"transactionId": message_id, "status": status}
    return ReportToRecord(parse_panelsms_report(body), raw or body, ["panel"])


class CountingBatcher(ReportBatcher):
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        super().__init__(sessions, max_batch=50)
        self.batches: list[int] = []

    def _write(self, items: list[ReportToRecord]) -> list[ReportResult | Exception]:
        self.batches.append(len(items))
        with self.sessions() as session:
            return record_reports(session, items)


async def test_reports_arriving_together_are_written_in_few_batches(
    sessions: sessionmaker[Session], make_message: Callable[..., Message]
) -> None:
    messages = [make_message(provider="panel", status=S.SENT) for _ in range(120)]
    batcher = CountingBatcher(sessions)
    results = await asyncio.gather(*(batcher.record(item(m.id)) for m in messages))
    assert all(r.status == S.DELIVERED for r in results)
    assert [r.message_id for r in results] == [m.id for m in messages]
    assert sum(batcher.batches) == 120 and max(batcher.batches) == 50
    assert len(batcher.batches) <= 4
    with sessions() as session:
        delivered = [session.get(Message, m.id) for m in messages]
        assert {m.status for m in delivered if m is not None} == {S.DELIVERED}


async def test_a_failing_report_raises_for_its_request_only(
    sessions: sessionmaker[Session], make_message: Callable[..., Message]
) -> None:
    good, other = (make_message(provider="panel", status=S.SENT) for _ in range(2))
    batcher = ReportBatcher(sessions)
    results = await asyncio.gather(
        batcher.record(item(good.id)),
        batcher.record(item(other.id, raw={"not json": object()})),
        return_exceptions=True,
    )
    assert isinstance(results[0], ReportResult) and results[0].status == S.DELIVERED
    assert isinstance(results[1], Exception)
