"""Campaign ingestion: a stream of recipients in, message rows and send tasks out.

Built for a million rows: the recipients are read once, lazily, never held in
memory; per row there is only Python validation (the E.164 fast path of
``producer.numbers``, ``str.format_map``, ``models.sms_text.analyze``), no
ORM object and no query. Every chunk of accepted rows is formatted for the
database here and handed to a writer thread, which writes it in bulk
(``producer.campaign_writers``: ``COPY`` on PostgreSQL, Core ``executemany`` elsewhere)
and commits while the next chunk is being read. The stop list is read once,
before the first row (``producer.campaign_writers.load_stop_list``; a very large one is
queried a chunk at a time instead). The first chunk is :data:`FIRST_CHUNK`
rows, so sending starts quickly; later ones are as large as the writer
prefers (10,000 rows for ``COPY``). Once a chunk is committed its ids are
enqueued, one send task per ``SMSQ_BATCH_SIZE`` ids, so sending starts while
the file is still being read. Measurements: ``docs/performance.md``.

No event row is written for a campaign message's first status (an event per
message was ~40 % of the database's work): it is implied by the row, see
:func:`producer.campaign_history.implied_first_event`, which every reader of a
message's history uses. The template each row is rendered with is
:mod:`producer.campaign_templates`.

What a row becomes:

- a **message** (``accepted`` in the receipt): ``queued`` (sent now, or with
  an ETA when ``send_at`` is within the scheduling horizon), ``scheduled``
  (``send_at`` further away: the worker starts the campaign), or
  ``suppressed`` (the number is on the stop list: recorded, never sent);
- a **rejected row** (no message): a bad number, a missing template field, a
  text too long once filled in, or a number already in an earlier row
  ("duplicate of row N": a number is sent once per campaign), or a CSV row
  that could not be read (a :class:`producer.csv_rows.BadRow`). The first
  :data:`~producer.receipts.MAX_ERRORS` rejected rows are reported with their row number.

Memory per distinct number is one dict entry (number as an int -> first row),
about 100 bytes: ~100 MB for a million recipients.

Two rules keep the worker from finishing or starting a campaign that is still
being read (the worker finishes a ``running`` campaign once none of its
messages is pending, and the promoter starts a ``scheduled`` one):

- the first message written stays ``accepted`` -- pending, never enqueued --
  until the last chunk is in, and then moves to its real status;
- a scheduled campaign is ``draft`` while it is read, ``scheduled`` after.

The held message is also the upload's heartbeat: its ``updated_at`` is
touched with every chunk committed and, while no chunk is (a slow client),
every :data:`HEARTBEAT_EVERY` seconds by a timer that hands a one-row
``UPDATE`` to the writer thread (the session's only user while reading). A
held message untouched for ``SMSQ_INGEST_STALL_AFTER`` belongs to an
ingesting process that died (``kill -9``, a lost machine): the sweeper
cancels its campaign (``worker.ingest_stall``). Ingestion that outlives such
a cancel (a process frozen for a minute) writes its last chunks into a
cancelled campaign -- the worker claims none of them and the sweeper cancels
them -- and its final settle is a no-op: the held message is no longer
``accepted``, the campaign no longer has the status ingestion set, and the
receipt answers ``cancelled``.

A campaign with nothing to send (every row rejected, or every accepted number
on the stop list, or no rows) is ``finished`` at once, with ``finished_at``;
its counts say why. It is not ``cancelled``: nobody cancelled it. A campaign
whose reading fails midway (the iterable raises: a broken upload, a database
error) is ``cancelled`` and the error re-raised: its written rows stay, but
the worker claims none of them, since a retried upload would send them twice.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from models.ledger import settle_first_status
from models.sms_text import Encoding, SmsText, TextError, analyze
from models.status import CampaignStatus, MessageStatus
from models.tables import Campaign, Message, utcnow
from producer.campaign_templates import Template
from producer.campaign_writers import Row, Shared, load_stop_list, new_ids, writer_for
from producer.csv_rows import BadRow
from producer.errors import InvalidField
from producer.numbers import normalize_number
from producer.receipts import MAX_ERRORS, VALUE_SHOWN, CampaignReceipt, RejectedRow
from producer.routing import Routing
from producer.validation import storage_problem, text_reason

log = structlog.get_logger("smsq.producer")

FIRST_CHUNK = 1000  # rows in the first bulk insert: sending starts early
POLL_EVERY = 1000  # rows read between looks at whether the chunk in flight is in
# Seconds between touches of the held message while nothing else touches it;
# SMSQ_INGEST_STALL_AFTER (at least 10) must be several of these.
HEARTBEAT_EVERY = 5.0

S = MessageStatus
_GSM7 = Encoding.GSM7


@dataclass(frozen=True, slots=True)
class CampaignPlan:
    """The validated, campaign-wide part of a submission."""

    campaign_id: str
    name: str
    template: Template
    provider: str  # as asked for (an account or a route), else the default account
    routing: Routing  # each row's account and route
    sender: str | None
    send_at: dt.datetime | None
    scheduled: bool  # send_at beyond the scheduling horizon
    expires_at: dt.datetime
    now: dt.datetime
    max_parts: int
    batch_size: int
    phone_field: str
    queue: str


# What a campaign is read from: numbers, rows of fields, and rows a reader
# could not read (producer.csv_rows), each counted as one recipient row.
Recipient = str | Mapping[str, Any] | BadRow
Enqueue = Callable[[list[str], dt.datetime | None], object]
# number, text, encoding, segments, destination (index in the plan's routing)
Pending = tuple[str, str, str, int, int]


@dataclass(slots=True)
class Chunk:
    """Accepted rows with their ids and statuses, ready for the writer."""

    rows: list[Row]
    queued: list[str]  # ids to enqueue once committed
    held: tuple[str, MessageStatus] | None  # the first message, kept 'accepted'
    suppressed: int


def make_chunk(
    pending: list[Pending],
    ids: list[str],
    *,
    status: MessageStatus,
    stopped: AbstractSet[str],
    hold_first: bool,
) -> Chunk:
    """Give each row its id and status; with ``hold_first`` the first row is
    written ``accepted`` (the held message, see the module docstring)."""
    usual, suppressed = status.value, S.SUPPRESSED.value
    rows: list[Row] = [
        (mid, number, text, encoding, segments, suppressed if number in stopped else usual, dest)
        for mid, (number, text, encoding, segments, dest) in zip(ids, pending, strict=True)
    ]
    held = None
    if hold_first and rows:
        mid, number, text, encoding, segments, first, dest = rows[0]
        held = (mid, S(first))
        rows[0] = (mid, number, text, encoding, segments, S.ACCEPTED.value, dest)
    queued = [row[0] for row in rows if row[5] == S.QUEUED] if usual == S.QUEUED else []
    count = sum(1 for number, *_ in pending if number in stopped) if stopped else 0
    return Chunk(rows, queued, held, count)


class Ingestion:
    """One pass over the recipients; see the module docstring.

    Reading and checking rows, and formatting them for the database (this
    thread), overlaps with writing the previous chunk (one writer thread, the
    only user of the session until the end, which mostly waits for the
    database with the GIL released): on PostgreSQL the server works while
    Python prepares the next chunk. At most one chunk is in flight; its ids
    are enqueued here, after its commit, as soon as this thread notices.
    """

    def __init__(
        self,
        session: Session,
        plan: CampaignPlan,
        enqueue: Enqueue,
        *,
        heartbeat_every: float | None = None,
    ) -> None:
        self.session = session
        self.plan = plan
        self.enqueue = enqueue
        self.heartbeat_every = HEARTBEAT_EVERY if heartbeat_every is None else heartbeat_every
        self.writer = writer_for(
            session,
            Shared(
                campaign_id=plan.campaign_id,
                destinations=plan.routing.destinations,
                sender=plan.sender,
                send_at=plan.send_at,
                scheduled=plan.scheduled,
                expires_at=plan.expires_at,
                now=plan.now,
            ),
        )
        self.stop_list: frozenset[str] | None = frozenset()  # None: query per chunk
        self.chunk_rows = min(FIRST_CHUNK, self.writer.rows_per_chunk)
        self.initial_status = CampaignStatus.DRAFT if plan.scheduled else CampaignStatus.RUNNING
        self.row_status = S.SCHEDULED if plan.scheduled else S.QUEUED
        # Reading side (this thread).
        self.seen: dict[int, int] = {}  # number (digits as int) -> first row
        self.pending: list[Pending] = []
        self.accepted = 0
        self.written = 0  # accepted rows committed
        self.rejected = 0
        self.errors: list[RejectedRow] = []
        self.to_enqueue: list[str] = []
        # Writing side (the writer thread while chunks are in flight).
        self.created = False
        self.suppressed = 0
        self.held: tuple[str, MessageStatus] | None = None  # the first message, kept accepted
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight: Future[tuple[Chunk, int]] | None = None
        # The heartbeat (see the module docstring); the held id and the last
        # touch are the writer thread's.
        self._held_id: str | None = None
        self._last_touch = time.monotonic()
        self._touched: Future[None] | None = None
        self._stop_beat = threading.Event()
        self._beat: threading.Thread | None = None
        self.cancelled_meanwhile = False  # the held message was moved by someone else

    def run(self, recipients: Iterable[Recipient]) -> CampaignReceipt:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="smsq-ingest")
        try:
            self.stop_list = load_stop_list(self.session)
            self.session.rollback()  # end the read transaction: the writer begins its own
            self._start_heartbeat()
            self._read(recipients)
            self._hand_over()
            self._collect()
        except BaseException:
            self._stop_heartbeat()
            self._abandon()
            raise
        finally:
            self._stop_heartbeat()
            self._executor.shutdown()
        return self._finish()

    def _read(self, recipients: Iterable[Recipient]) -> None:
        plan = self.plan
        template = plan.template
        static: SmsText | None = None
        if not template.fields:
            static = analyze(template.text.format_map({}), max_parts=plan.max_parts)
        phone_field = plan.phone_field
        max_parts = plan.max_parts
        seen = self.seen
        pending = self.pending
        reject = self._reject
        normalize = normalize_number
        render = template.render
        # Per-row routing only when the number can change the answer.
        route_of = None if plan.routing.fixed is not None else plan.routing.index

        for row_no, row in enumerate(recipients, 1):
            values: Mapping[str, Any]
            if isinstance(row, Mapping):
                raw: Any = row.get(phone_field)
                values = row
            elif type(row) is str:
                raw = row
                values = {phone_field: row}
            elif isinstance(row, BadRow):
                reject(row_no, row.value, row.reason)
                continue
            else:
                reject(row_no, repr(row), "not a phone number or a mapping of fields")
                continue
            if raw is None:
                reject(row_no, "", f"missing phone field {phone_field!r}")
                continue
            try:
                number = normalize(raw, field=phone_field)
            except InvalidField as exc:
                reject(row_no, str(raw), exc.reason)
                continue
            key = int(number[1:])
            first = seen.get(key)
            if first is not None:
                reject(row_no, raw, f"duplicate of row {first}")
                continue
            if static is not None:
                sms = static
            else:
                try:
                    body = render(values)
                except KeyError as exc:
                    reject(row_no, raw, f"missing template field {exc.args[0]!r}")
                    continue
                problem = storage_problem(body)
                if problem is not None:
                    reject(row_no, raw, f"text {problem}")
                    continue
                try:
                    sms = analyze(body, max_parts=max_parts)
                except TextError as exc:
                    reject(row_no, raw, text_reason(exc))
                    continue
            seen[key] = row_no
            pending.append(
                (
                    number,
                    sms.text,
                    "gsm7" if sms.encoding is _GSM7 else "ucs2",
                    len(sms.parts),
                    0 if route_of is None else route_of(number),
                )
            )
            waiting = len(pending)
            if waiting >= self.chunk_rows:
                self._hand_over()
                self.chunk_rows = self.writer.rows_per_chunk
            elif (
                waiting % POLL_EVERY == 0 and self._in_flight is not None and self._in_flight.done()
            ):
                self._collect()  # enqueue its ids now, not a whole chunk later

    def _reject(self, row: int, value: str, reason: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(RejectedRow(row, value[:VALUE_SHOWN], reason))

    # --- between the threads ---------------------------------------------------

    def _hand_over(self) -> None:
        """Give the pending rows to the writer, after the previous chunk is in."""
        if not self.pending:
            return
        pending = self.pending.copy()
        self.pending.clear()  # in place: _read() holds this list
        self.accepted += len(pending)
        ids = new_ids(len(pending))
        first = self.accepted == len(pending)
        chunk = make_chunk(
            pending,
            ids,
            status=self.row_status,
            stopped=self.stop_list or frozenset(),
            hold_first=first,
        )
        prepared = self.writer.prepare(chunk.rows)
        self._collect()
        assert self._executor is not None
        recheck = None if self.stop_list is not None else (pending, ids, first)
        self._in_flight = self._executor.submit(
            self._write_chunk, chunk, prepared, recheck, self.accepted, self.rejected
        )

    def _collect(self) -> None:
        """Wait for the chunk in flight (re-raising its error); enqueue its ids."""
        if self._in_flight is None:
            return
        future, self._in_flight = self._in_flight, None
        chunk, self.written = future.result()
        self.suppressed += chunk.suppressed
        if chunk.held is not None:
            self.held = chunk.held
        if not self.plan.scheduled:
            self.to_enqueue.extend(chunk.queued)
            self._enqueue_batches(final=False)

    # --- the heartbeat -----------------------------------------------------------

    def _start_heartbeat(self) -> None:
        self._beat = threading.Thread(
            target=self._heartbeat, name="smsq-ingest-heartbeat", daemon=True
        )
        self._beat.start()

    def _heartbeat(self) -> None:
        """Timer thread: have the writer touch the held message when nothing did
        for ``heartbeat_every`` (never two touches queued at once)."""
        assert self._executor is not None
        while not self._stop_beat.wait(self.heartbeat_every / 4):
            if time.monotonic() - self._last_touch < self.heartbeat_every:
                continue
            if self._touched is not None and not self._touched.done():
                continue
            try:
                self._touched = self._executor.submit(self._touch)
            except RuntimeError:  # the executor is shutting down
                return

    def _stop_heartbeat(self) -> None:
        """Stop the timer and wait for its last touch: the session is then free
        for this thread again."""
        self._stop_beat.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        if self._touched is not None:
            wait([self._touched])
            self._touched = None

    def _touch(self) -> None:
        """Writer thread: touch the held message in a transaction of its own."""
        if self._held_id is None:
            return  # nothing written yet: nothing the sweeper could cancel
        try:
            self._touch_held()
            self.session.commit()
        except Exception as exc:
            # A database blip: the next touch or chunk tries again, and a
            # chunk that fails ends the ingestion (``_abandon``).
            self.session.rollback()
            log.warning(
                "could not touch a campaign's upload heartbeat",
                campaign_id=self.plan.campaign_id,
                error=type(exc).__name__,
            )

    def _touch_held(self) -> None:
        """Writer thread, inside its transaction: one UPDATE by primary key."""
        assert self._held_id is not None
        self._last_touch = time.monotonic()
        touched = self.session.execute(
            update(Message)
            .where(Message.id == self._held_id, Message.status == S.ACCEPTED.value)
            .values(updated_at=utcnow())
            .returning(Message.id)
        ).first()
        if touched is None and not self.cancelled_meanwhile:
            self.cancelled_meanwhile = True
            log.warning(
                "campaign cancelled while its upload is read: the rest is written, never sent",
                campaign_id=self.plan.campaign_id,
            )

    # --- failure ----------------------------------------------------------------

    def _abandon(self) -> None:
        """Reading or writing failed: cancel what was written, so none of a
        half-read list is sent (a retried upload would send it twice)."""
        if self._in_flight is not None:
            future, self._in_flight = self._in_flight, None
            wait([future])
            if future.exception() is None:
                self.written = future.result()[1]
        if not self.created:
            return
        try:
            self.session.rollback()
            self.session.execute(
                update(Campaign)
                .where(Campaign.id == self.plan.campaign_id)
                .values(
                    status=CampaignStatus.CANCELLED.value,
                    finished_at=self.plan.now,
                    accepted=self.written,
                    rejected=self.rejected,
                )
            )
            self.session.commit()
        except Exception:
            log.exception(
                "could not cancel a failed campaign ingestion", campaign_id=self.plan.campaign_id
            )

    # --- the writer thread -----------------------------------------------------

    def _write_chunk(
        self,
        chunk: Chunk,
        prepared: object,
        recheck: tuple[list[Pending], list[str], bool] | None,
        accepted: int,
        rejected: int,
    ) -> tuple[Chunk, int]:
        """Insert one chunk and the running counts; commit.

        ``recheck`` (a stop list too large to hold) asks for the chunk's
        numbers to be looked up first. Returns the chunk as written, and the
        accepted count now committed.
        """
        session = self.session
        if not self.created:
            self._create_campaign(self.initial_status, accepted=0, rejected=0)
        if recheck is not None:
            pending, ids, first = recheck
            stopped = self.writer.stop_listed(session, [p[0] for p in pending])
            if stopped:
                chunk = make_chunk(
                    pending, ids, status=self.row_status, stopped=stopped, hold_first=first
                )
                prepared = self.writer.prepare(chunk.rows)
        self.writer.write(session, prepared)
        if chunk.held is not None:
            self._held_id = chunk.held[0]
        if self._held_id is not None:
            self._touch_held()  # written with the plan's time: touch it now
        session.execute(
            update(Campaign)
            .where(Campaign.id == self.plan.campaign_id)
            .values(accepted=accepted, rejected=rejected)
        )
        session.commit()
        return chunk, accepted

    # --- the end ---------------------------------------------------------------

    def _enqueue_batches(self, *, final: bool) -> None:
        size = self.plan.batch_size
        eta = self.plan.send_at
        while len(self.to_enqueue) >= size or (final and self.to_enqueue):
            batch, self.to_enqueue = self.to_enqueue[:size], self.to_enqueue[size:]
            self.enqueue(batch, eta)

    def _create_campaign(self, status: CampaignStatus, *, accepted: int, rejected: int) -> None:
        plan = self.plan
        started = status is CampaignStatus.RUNNING
        self.session.execute(
            insert(Campaign).values(
                id=plan.campaign_id,
                name=plan.name,
                text=plan.template.text,
                provider=plan.provider,
                sender=plan.sender,
                status=status.value,
                send_at=plan.send_at,
                accepted=accepted,
                rejected=rejected,
                created_at=plan.now,
                started_at=(plan.send_at or plan.now) if started else None,
                finished_at=plan.now if status is CampaignStatus.FINISHED else None,
            )
        )
        self.created = True

    def _finish(self) -> CampaignReceipt:
        """Release the held message, store totals and the final status; commit."""
        plan, session = self.plan, self.session
        if self.accepted == self.suppressed:
            final = CampaignStatus.FINISHED  # nothing to send
        elif plan.scheduled:
            final = CampaignStatus.SCHEDULED
        else:
            final = CampaignStatus.RUNNING
        if not self.created:
            self._create_campaign(final, accepted=self.accepted, rejected=self.rejected)
        else:
            if self.held is not None:
                # Like every campaign message, without an event (implied).
                # Only from 'accepted': an operator may have cancelled it.
                held_id, held_status = self.held
                moved = settle_first_status(session, held_id, held_status, now=plan.now)
                if moved and held_status is S.QUEUED:
                    self.to_enqueue.append(held_id)
            campaign = update(Campaign).where(Campaign.id == plan.campaign_id)
            session.execute(campaign.values(accepted=self.accepted, rejected=self.rejected))
            if final is not self.initial_status:
                # Only from the status we set: an operator may have paused or
                # cancelled the campaign while it was being read.
                session.execute(
                    campaign.where(Campaign.status == self.initial_status.value).values(
                        status=final.value,
                        finished_at=plan.now if final is CampaignStatus.FINISHED else None,
                    )
                )
        session.commit()
        current = session.scalar(select(Campaign.status).where(Campaign.id == plan.campaign_id))
        if current == CampaignStatus.CANCELLED:
            # By an operator, or by the sweeper when the heartbeat stopped for
            # SMSQ_INGEST_STALL_AFTER: the receipt says so, nothing more is sent.
            log.warning(
                "campaign cancelled while its upload was read",
                campaign_id=plan.campaign_id,
                accepted=self.accepted,
            )
            self.to_enqueue.clear()
        if not plan.scheduled:
            self._enqueue_batches(final=True)
        return CampaignReceipt(
            campaign_id=plan.campaign_id,
            accepted=self.accepted,
            rejected=self.rejected,
            errors=self.errors,
            suppressed=self.suppressed,
            status=current or final.value,
        )
