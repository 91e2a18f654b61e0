"""Applying queued delivery reports to the database: the report stream's consumer.

The receiver only appends reports to a Redis stream
(:mod:`producer.report_stream`); a :class:`ReportApplier` reads them as one
member of a consumer group (:data:`smsq.core.names.DLR_STREAM_GROUP`) and
records them (:func:`models.ledger.reports.record_reports`) in batches of up
to :data:`BATCH`, one transaction each. It runs inside every API process
(:class:`ReportApplierThread`, started by ``smsq.api_app``): reports only
arrive through the API, so whatever queues a worker fleet consumes, the
reports are applied. Several API processes share the stream as one group.

Decisions:

- **Acknowledged after the commit, never before.** An entry is ``XACK``-ed
  and ``XDEL``-eted once the transaction holding it committed, so the stream
  holds only what is not applied yet.
- **A database outage loses nothing.** If the batch fails (the database is
  unreachable, restarting, deadlocked, not migrated yet, or anything else
  but a refused value), the entries stay pending and the batch is read again
  after a backoff of 0.2 s, doubling up to 5 s, for as long as it takes: the
  backlog metrics show it. Only a report the database refuses by its value
  (``DataError``/``IntegrityError``: the batch is then retried one report at
  a time to find it) is given up, after :data:`MAX_REFUSALS` refusals, with
  an error log (``dlr.dropped``), rather than blocking the stream.
- **A dead applier's entries are taken over.** Entries pending for
  :data:`CLAIM_IDLE` seconds (their applier died between reading and
  acknowledging) are claimed (``XAUTOCLAIM``) by another applier.
- **Applying twice is harmless.** A claimed entry may have been committed
  just before its applier died. Recording a report again never moves its
  message (the state machine: a final state sticks, a repeated status is no
  move); it is kept as one more event with ``applied=False``, as a report
  the provider itself sent twice.

The applied reports are counted and logged here (``smsq_dlr_unmatched_total``,
``smsq_delivery_reports_total``, ``smsq_dlr_lag_seconds`` from the report's
arrival; ``dlr.recorded``/``dlr.unmatched``), and the stream's depth and the
age of its oldest entry are kept in ``smsq_dlr_backlog`` and
``smsq_dlr_backlog_age_seconds`` (:mod:`producer.http.metrics`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
import structlog
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from models.ledger.reports import ReportResult, ReportToRecord, record_reports
from producer.http.metrics import observe_backlog, observe_report
from producer.report_stream import EntryError, decode, received_at
from smsq.core.names import DLR_STREAM_GROUP, DLR_STREAM_KEY

log = structlog.get_logger("smsq.dlr")

BATCH = 500  # entries per read and per transaction
BLOCK = 1.0  # seconds a read waits for new entries
CLAIM_IDLE = 30.0  # seconds pending before another applier takes an entry over
CLAIM_EVERY = 5.0  # seconds between two looks for such entries
BACKOFF_FIRST = 0.2  # seconds before reading a failed batch again, doubling...
BACKOFF_CAP = 5.0  # ...up to this
MAX_REFUSALS = 5  # times the database may refuse one report before it is dropped

# The database refuses the report itself (a value it cannot store): retrying
# the same report cannot help. Any other failure is the database's (or ours):
# the report is kept.
REFUSED = (DataError, IntegrityError)

Entry = tuple[bytes, dict[bytes, bytes] | None]


class DatabaseAway(Exception):
    """The batch could not be written (the database is away, or in the way); its
    entries stay pending."""


class ReportApplier:
    """One consumer of the report stream; :meth:`apply_batch` is one step, :meth:`run` the loop."""

    def __init__(
        self,
        client: redis.Redis,
        sessions: Callable[[], Session],
        *,
        consumer: str | None = None,
        batch: int = BATCH,
        claim_idle: float = CLAIM_IDLE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.sessions = sessions
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.batch = batch
        self.claim_idle = claim_idle
        self.clock = clock
        self._group_ready = False
        self._own_pending = True  # entries of ours from before (read them first)
        self._refusals: dict[bytes, int] = {}

    # --- one step ------------------------------------------------------------

    def apply_batch(self, *, block: float = 0) -> int:
        """Read up to ``batch`` entries (ours left pending first), apply, acknowledge.

        Returns how many entries were done with (applied, or dropped as not
        a report). Raises :class:`DatabaseAway` when the database is away:
        the entries then stay pending, to be read again.
        """
        entries = self._read(block)
        if not entries:
            return 0
        items: list[tuple[bytes, ReportToRecord]] = []
        done: list[bytes] = []
        for entry_id, fields in entries:
            if fields is None:  # deleted while pending (applied by an applier it was claimed from)
                done.append(entry_id)
                continue
            try:
                items.append((entry_id, decode(entry_id, fields)))
            except EntryError as exc:
                log.error("dlr.dropped", entry=entry_id.decode(), problem=str(exc))
                done.append(entry_id)
        try:
            if items:
                done += self._record(items)
        finally:
            self._acknowledge(done)
        return len(done)

    def drain(self) -> int:
        """Apply everything in the stream now, without waiting; how many entries.

        For tests and tools: deterministic, no thread. Raises
        :class:`DatabaseAway` as :meth:`apply_batch` does.
        """
        total = 0
        while applied := self.apply_batch():
            total += applied
        self.observe_backlog()
        return total

    def reclaim(self) -> int:
        """Take over entries left pending by a dead applier; how many."""
        self._ensure_group()
        start = "0-0"
        claimed = 0
        while True:
            answer = self.client.xautoclaim(
                DLR_STREAM_KEY,
                DLR_STREAM_GROUP,
                self.consumer,
                min_idle_time=int(self.claim_idle * 1000),
                start_id=start,
                count=self.batch,
            )
            start_raw, entries = answer[0], answer[1]
            claimed += len(entries)
            start = start_raw.decode() if isinstance(start_raw, bytes) else str(start_raw)
            if start == "0-0":
                break
        if claimed:
            self._own_pending = True
            log.warning("dlr.reclaimed", entries=claimed, consumer=self.consumer)
        return claimed

    def observe_backlog(self) -> None:
        """Set the backlog gauges: entries not applied yet, age of the oldest."""
        pipe = self.client.pipeline(transaction=False)
        pipe.xlen(DLR_STREAM_KEY)
        pipe.xrange(DLR_STREAM_KEY, count=1)
        depth, oldest = pipe.execute()
        age = 0.0
        if oldest:
            age = max(0.0, self.clock() - received_at(oldest[0][0]).timestamp())
        observe_backlog(int(depth), age)

    # --- the loop ------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Apply reports until ``stop`` is set; never raises (Redis or database away: retry)."""
        delay = 0.0
        next_claim = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() >= next_claim:
                    self.reclaim()
                    self.observe_backlog()
                    next_claim = time.monotonic() + CLAIM_EVERY
                self.apply_batch(block=BLOCK)
                delay = 0.0
                continue
            except DatabaseAway as exc:
                delay = min(BACKOFF_CAP, delay * 2 or BACKOFF_FIRST)
                log.warning("dlr.database_away", error=_describe(exc.__cause__), retry_in=delay)
            except redis.RedisError as exc:
                delay = min(BACKOFF_CAP, delay * 2 or BACKOFF_FIRST)
                self._group_ready = False  # a Redis that restarted empty lost the group
                log.warning("dlr.redis_away", error=_describe(exc), retry_in=delay)
            except Exception as exc:  # a bug must not end the loop: reports would pile up
                delay = BACKOFF_CAP
                log.exception("dlr.applier_failed", error=_describe(exc))
            stop.wait(delay)

    # --- the parts -----------------------------------------------------------

    def _ensure_group(self) -> None:
        if not self._group_ready:
            self._create_group()

    def _create_group(self) -> bool:
        """Make the consumer group (and the stream); False if it was there."""
        try:
            # From the start of the stream: entries appended before the group was made count.
            self.client.xgroup_create(DLR_STREAM_KEY, DLR_STREAM_GROUP, id="0", mkstream=True)
            created = True
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            created = False
        self._group_ready = True
        return created

    def _read(self, block: float) -> list[Entry]:
        self._ensure_group()
        if self._own_pending:
            entries = self._read_from("0", block=None)
            if entries:
                return entries
            self._own_pending = False
        return self._read_from(">", block=int(block * 1000) if block > 0 else None)

    def _read_from(self, start: str, *, block: int | None) -> list[Entry]:
        try:
            answer: Any = self.client.xreadgroup(
                DLR_STREAM_GROUP,
                self.consumer,
                {DLR_STREAM_KEY: start},
                count=self.batch,
                block=block,
            )
        except redis.ResponseError:
            # NOGROUP: Redis lost the stream and group (restarted without
            # persistence, or flushed). Make them again; any other error stands.
            if not self._create_group():
                raise
            log.warning("dlr.group_recreated", stream=DLR_STREAM_KEY)
            return []
        if not answer:
            return []
        _key, entries = answer[0]
        return list(entries)

    def _record(self, items: list[tuple[bytes, ReportToRecord]]) -> list[bytes]:
        """Record the batch; the ids done with. Raises :class:`DatabaseAway`."""
        records = [item for _, item in items]
        try:
            with self.sessions() as session:
                try:
                    results: list[ReportResult | Exception] = record_reports(
                        session, records, isolate_errors=False
                    )
                except REFUSED:
                    # One report the database will not take: find it.
                    results = record_reports(session, records)
        except Exception as exc:
            self._own_pending = True
            raise DatabaseAway(_describe(exc)) from exc
        done: list[bytes] = []
        away: Exception | None = None
        for (entry_id, item), result in zip(items, results, strict=True):
            if isinstance(result, Exception):
                if not isinstance(result, REFUSED):
                    away = result
                elif self._refused(entry_id, item, result):
                    done.append(entry_id)
                continue
            self._refusals.pop(entry_id, None)
            _observe(item, result)
            done.append(entry_id)
        if len(done) < len(items):
            self._own_pending = True
        if away is not None:
            self._acknowledge(done)  # what did get in is not applied twice
            raise DatabaseAway(_describe(away)) from away
        return done

    def _refused(self, entry_id: bytes, item: ReportToRecord, exc: Exception) -> bool:
        """Count a refusal; True once the report is to be dropped."""
        refusals = self._refusals[entry_id] = self._refusals.get(entry_id, 0) + 1
        fields = {
            "entry": entry_id.decode(),
            "adapter": item.report.adapter,
            "message_id": item.report.message_id,
            "provider_message_id": item.report.provider_message_id,
            "error": _describe(exc),
        }
        if refusals < MAX_REFUSALS:
            log.warning("dlr.refused", refusals=refusals, **fields)
            return False
        del self._refusals[entry_id]
        log.error("dlr.dropped", refusals=refusals, **fields)
        return True

    def _acknowledge(self, ids: list[bytes]) -> None:
        if not ids:
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.xack(DLR_STREAM_KEY, DLR_STREAM_GROUP, *ids)
        pipe.xdel(DLR_STREAM_KEY, *ids)
        pipe.execute()


class ReportApplierThread:
    """:meth:`ReportApplier.run` in a daemon thread; :meth:`stop` ends it within about a second."""

    def __init__(self, applier: ReportApplier) -> None:
        self.applier = applier
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=applier.run, args=(self._stop,), name="smsq-report-applier", daemon=True
        )

    def start(self) -> ReportApplierThread:
        self._thread.start()
        log.info("dlr.applier_started", consumer=self.applier.consumer)
        return self

    def stop(self, timeout: float = BLOCK + 10) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)


def _observe(item: ReportToRecord, result: ReportResult) -> None:
    report = item.report
    observe_report(report.adapter, result, now=item.received_at)
    fields: dict[str, Any] = {
        "adapter": report.adapter,
        "provider": result.provider,
        "report_status": report.raw_status,
        "status": result.status,
    }
    if report.message_id is not None:
        fields["transaction_id"] = report.message_id
    else:
        fields["sms_id"] = report.provider_message_id
    if not result.matched:
        log.warning("dlr.unmatched", **fields)
    else:
        log.info("dlr.recorded", changed=result.changed, message_id=result.message_id, **fields)


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
