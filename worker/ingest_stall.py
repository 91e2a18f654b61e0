"""Campaigns whose upload died: cancelled, with none of their unsent rows ever sent.

While a campaign's recipients are read, its first message is held
``accepted`` (never enqueued) and touched -- its ``updated_at`` -- with every
chunk committed and at least every few seconds in between
(``producer.campaign_ingestion``). A held message untouched for
``SMSQ_INGEST_STALL_AFTER`` belongs to an ingesting process that died
(``kill -9`` of ``smsq api`` mid-upload, a lost machine): the campaign would
otherwise stay ``running`` forever, half read.

The sweeper then, in one transaction:

1. moves each such held message ``accepted`` -> ``cancelled``, only while it
   is still ``accepted`` and untouched (one UPDATE: a touch or the final
   settle committed first wins, and a settle that comes later finds it
   ``cancelled`` and does nothing);
2. cancels its campaign (``finished_at``; ``accepted`` set to the rows
   written), unless it is already final;
3. moves its unsent rows (``accepted``/``scheduled``/``queued``) to
   ``cancelled``, each with an event saying why. Rows already ``sending`` or
   further went out before the cancel and keep going; the worker claims no
   row of a campaign that is not ``running``.

``smsq campaign status`` shows what went out before: the counts per status.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from models.ledger import move_campaign_messages, move_where
from models.queries import campaign_counts
from models.status import CampaignStatus, EventSource, MessageStatus
from models.tables import Campaign, Message

log = structlog.get_logger("smsq.worker")

S = MessageStatus
C = CampaignStatus
UNSENT = (S.ACCEPTED, S.SCHEDULED, S.QUEUED)
# A campaign being read is draft (scheduled) or running, or an operator paused it.
NOT_FINAL = (C.DRAFT, C.SCHEDULED, C.RUNNING, C.PAUSED)
DETAIL = "ingestion stopped: the uploading process died"


@dataclass(frozen=True, slots=True)
class StalledUpload:
    """A campaign cancelled because its upload stopped."""

    campaign_id: str
    written: int  # rows that became messages before the upload stopped
    cancelled: int  # unsent rows cancelled now (the held one included)
    went_out: int  # neither cancelled nor suppressed: sending or further before the cancel


def cancel_stalled_uploads(
    session: Session, *, now: dt.datetime, stall_after: float
) -> list[StalledUpload]:
    """Cancel every campaign whose held message is untouched for ``stall_after``
    seconds; see the module docstring. The caller commits."""
    held = move_where(
        session,
        S.CANCELLED,
        where=[
            Message.campaign_id.is_not(None),
            Message.updated_at < now - dt.timedelta(seconds=stall_after),
            Message.campaign_id.in_(select(Campaign.id).where(Campaign.status.in_(NOT_FINAL))),
        ],
        from_statuses=[S.ACCEPTED],
        source=EventSource.SWEEPER,
        now=now,
        returning=[Message.campaign_id],
        detail=DETAIL,
    )
    stalled: list[StalledUpload] = []
    for campaign_id in sorted({row[1] for row in held}):
        written = select(func.count()).where(Message.campaign_id == campaign_id)
        session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id, Campaign.status.in_(NOT_FINAL))
            .values(
                status=C.CANCELLED.value,
                finished_at=now,
                accepted=written.scalar_subquery(),
            )
        )
        cancelled = 1 + move_campaign_messages(
            session,
            campaign_id,
            from_statuses=UNSENT,
            to=S.CANCELLED,
            source=EventSource.SWEEPER,
            now=now,
            detail=DETAIL,
        )
        counts = campaign_counts(session, campaign_id)
        total = sum(counts.values())
        unsent_final = counts.get(S.CANCELLED, 0) + counts.get(S.SUPPRESSED, 0)
        upload = StalledUpload(campaign_id, total, cancelled, total - unsent_final)
        stalled.append(upload)
        log.warning(
            "campaign cancelled: its upload stopped (the ingesting process died)",
            campaign_id=campaign_id,
            stall_after_s=stall_after,
            written=upload.written,
            cancelled=upload.cancelled,
            went_out=upload.went_out,
        )
    return stalled
