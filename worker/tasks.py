"""Celery tasks: thin, each runs a plain function from this package."""

from __future__ import annotations

import datetime as dt

import structlog

from smsq.names import (
    QUEUE_CAMPAIGN,
    QUEUE_FOR_KIND,
    TASK_PROMOTE,
    TASK_SEND,
    TASK_START_CAMPAIGN,
    TASK_SWEEP,
)
from worker import fleet
from worker.app import app
from worker.campaign_progress import queued_batches, start_campaign
from worker.runtime import get_runtime
from worker.scheduler import promote_due
from worker.sending import send_batch

log = structlog.get_logger("smsq.worker")

# A report for a message we never stored is kept this long, then dropped.
ORPHAN_REPORT_LIFETIME = dt.timedelta(days=1)


@app.task(name=TASK_SEND)
def send_messages(ids: list[str], resend_unknown: bool = False) -> dict[str, int]:
    rt = get_runtime()
    result = rt.run(send_batch(rt.send_context(), ids, resend_unknown=resend_unknown))
    return {"claimed": result.claimed, "sent": result.written.sent}


@app.task(name=TASK_START_CAMPAIGN)
def start_campaign_task(campaign_id: str) -> int:
    """Fan a campaign out into send tasks of ``SMSQ_BATCH_SIZE`` ids."""
    rt = get_runtime()
    with rt.sessions() as session:
        if not start_campaign(session, campaign_id, now=rt.now()):
            return 0
        batches = 0
        for ids in queued_batches(session, campaign_id, rt.settings.batch_size):
            rt.enqueue(ids, QUEUE_CAMPAIGN, None)
            batches += 1
    log.info("campaign started", campaign_id=campaign_id, batches=batches)
    return batches


@app.task(name=TASK_PROMOTE)
def promote_scheduled() -> int:
    rt = get_runtime()
    now = rt.now()
    with rt.sessions() as session:
        promoted = promote_due(session, now=now, horizon=rt.settings.schedule_horizon)
    for (kind, send_at), ids in promoted.messages.items():
        app.send_task(TASK_SEND, args=[ids], queue=QUEUE_FOR_KIND[kind], eta=_eta(send_at, now))
    for campaign_id, send_at in promoted.campaigns:
        app.send_task(
            TASK_START_CAMPAIGN, args=[campaign_id], queue=QUEUE_CAMPAIGN, eta=_eta(send_at, now)
        )
    return sum(len(ids) for ids in promoted.messages.values()) + len(promoted.campaigns)


def _eta(send_at: dt.datetime | None, now: dt.datetime) -> dt.datetime | None:
    return send_at if send_at is not None and send_at > now else None


@app.task(name=TASK_SWEEP)
def sweep_task() -> dict[str, int]:
    """The beat's sweep: the same work as ``smsq fleet reconcile`` (worker.fleet)."""
    rt = get_runtime()
    report = fleet.reconcile(
        rt.sessions,
        settings=rt.settings,
        broker=rt.broker_redis,
        publish=lambda task, args, kwargs, queue: app.send_task(
            task, args=args, kwargs=kwargs, queue=queue
        ),
        now=rt.now(),
    )
    return {"requeued": report.requeued, "leases_expired": report.leases_expired}
