"""The queue of delivery reports in Redis: what an entry holds, and appending.

The receiver (:mod:`producer.http.dlr`) appends each checked report to one
Redis stream (:data:`smsq.core.names.DLR_STREAM_KEY`) and answers the
provider once ``XADD`` returned; :mod:`producer.report_applier` reads the
stream and applies the reports to the database. So a report never waits
for, nor depends on, PostgreSQL being up at the moment it arrives.

An entry is one field, ``report``: JSON of the parsed report's fields, the
raw payload as it will be stored in the event (brand's callback ``key``
already removed), and the provider accounts it may match. The time we
received it is the entry's id (milliseconds on Redis's clock).

:func:`append_reports` sends a batch of entries in one pipeline (one round
trip for the reports of many concurrent requests; the receiver batches them
with its :class:`~producer.http.request_coalescing.GroupCommit`). Nothing
here trims the stream: an entry is deleted only once applied.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import redis

from models.ledger.reports import ReportToRecord
from models.reports import DeliveryReport
from models.status import MessageStatus
from smsq.core.names import DLR_STREAM_KEY

FIELD = b"report"


class EntryError(ValueError):
    """An entry that is not a report of ours (written by something else, or damaged)."""


def encode(item: ReportToRecord) -> dict[bytes, bytes]:
    """The stream entry of one report (``item.received_at`` is not kept: the id says it)."""
    report = item.report
    data: dict[str, Any] = {
        "adapter": report.adapter,
        "status": report.status.value,
        "raw_status": report.raw_status,
        "message_id": report.message_id,
        "provider_message_id": report.provider_message_id,
        "number": report.number,
        "error_code": report.error_code,
        "error_detail": report.error_detail,
        "at": report.at.isoformat() if report.at is not None else None,
        "status_field": report.status_field,
        "raw": item.raw,
        "accounts": sorted(item.accounts) if item.accounts is not None else None,
    }
    return {FIELD: json.dumps(data, separators=(",", ":")).encode()}


def decode(entry_id: bytes | str, fields: dict[bytes, bytes]) -> ReportToRecord:
    """The report an entry holds, received at the time its id says; :class:`EntryError` if none."""
    try:
        data = json.loads(fields[FIELD])
        at = data["at"]
        report = DeliveryReport(
            adapter=data["adapter"],
            status=MessageStatus(data["status"]),
            raw_status=data["raw_status"],
            message_id=data["message_id"],
            provider_message_id=data["provider_message_id"],
            number=data["number"],
            error_code=data["error_code"],
            error_detail=data["error_detail"],
            at=dt.datetime.fromisoformat(at) if at is not None else None,
            status_field=data["status_field"],
        )
        accounts = data["accounts"]
        return ReportToRecord(
            report,
            data["raw"],
            list(accounts) if accounts is not None else None,
            received_at=received_at(entry_id),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise EntryError(f"not a delivery report entry: {type(exc).__name__}: {exc}") from None


def received_at(entry_id: bytes | str) -> dt.datetime:
    """When Redis took an entry: the milliseconds of its id."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    millis = int(text.split("-", 1)[0])
    return dt.datetime.fromtimestamp(millis / 1000, dt.UTC)


def append_reports(client: redis.Redis, items: Sequence[ReportToRecord]) -> list[str]:
    """Append reports to the stream in one round trip; their entry ids, in order.

    Raises :class:`redis.RedisError` when Redis does not take them (none is
    then acknowledged to a provider).
    """
    pipe = client.pipeline(transaction=False)
    for item in items:
        pipe.xadd(DLR_STREAM_KEY, encode(item))  # type: ignore[arg-type]
    ids = pipe.execute()
    return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]
