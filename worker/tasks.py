"""Celery tasks: thin, each runs a plain function from this package.

The task bodies are plain functions of the process's :class:`Runtime`;
:func:`register` binds them to a Celery app (``worker.app.make_worker`` calls
it), so importing this module makes no app and registers nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

import structlog

from models import retention
from models.sqlite_writes import writes_first
from smsq.core.names import (
    QUEUE_CAMPAIGN,
    QUEUE_FOR_KIND,
    QUEUE_OTP,
    TASK_PROMOTE,
    TASK_PRUNE,
    TASK_RECOVER_OWNERS,
    TASK_SEND,
    TASK_START_CAMPAIGN,
    TASK_SWEEP,
)
from worker import fleet
from worker.campaign_progress import queued_batches, start_campaign
from worker.recovery import recover
from worker.runtime import ProcessRuntime, Runtime
from worker.scheduler import promote_due
from worker.sending import send_batch

log = structlog.get_logger("smsq.worker")


def send_messages(
    rt: Runtime, ids: list[str], resend_unknown: bool = False, *, urgent: bool = False
) -> dict[str, int]:
    """``urgent``: an OTP task; on the embedded SQLite its writes go before
    the campaign's (:func:`models.sqlite_writes.writes_first`)."""
    with writes_first() if urgent else contextlib.nullcontext():
        result = rt.run(send_batch(rt.send_context(), ids, resend_unknown=resend_unknown))
    return {"claimed": result.claimed, "sent": result.written.sent}


def start_campaign_batches(rt: Runtime, campaign_id: str) -> int:
    """Fan a campaign out into send tasks of ``SMSQ_BATCH_SIZE`` ids."""
    with rt.sessions() as session:
        if not start_campaign(session, campaign_id, now=rt.now()):
            return 0
        batches = 0
        for ids in queued_batches(session, campaign_id, rt.settings.batch_size):
            rt.publisher.send_messages(ids, queue=QUEUE_CAMPAIGN)
            batches += 1
    log.info("campaign started", campaign_id=campaign_id, batches=batches)
    return batches


def promote_scheduled(rt: Runtime) -> int:
    now = rt.now()
    with rt.sessions() as session:
        promoted = promote_due(session, now=now, horizon=rt.settings.schedule_horizon)
    for (kind, send_at), ids in promoted.messages.items():
        rt.publisher.send_messages(ids, queue=QUEUE_FOR_KIND[kind], eta=_eta(send_at, now))
    for campaign_id, send_at in promoted.campaigns:
        rt.publisher.start_campaign(campaign_id, eta=_eta(send_at, now))
    return sum(len(ids) for ids in promoted.messages.values()) + len(promoted.campaigns)


def _eta(send_at: dt.datetime | None, now: dt.datetime) -> dt.datetime | None:
    return send_at if send_at is not None and send_at > now else None


def sweep(rt: Runtime) -> dict[str, int]:
    """The beat's sweep: the same work as ``smsq fleet reconcile`` (worker.fleet)."""
    report = fleet.reconcile(
        rt.sessions,
        settings=rt.settings,
        broker=rt.broker_redis,
        publisher=rt.publisher,
        now=rt.now(),
        store=rt.store,
    )
    return {"requeued": report.requeued, "leases_expired": report.leases_expired}


def recover_owners(rt: Runtime) -> dict[str, int]:
    """The beat's recovery of dead workers' rows (``worker.recovery``)."""
    recovered = recover(
        rt.sessions,
        store=rt.store,
        publisher=rt.publisher,
        batch_size=rt.settings.batch_size,
        now=rt.now(),
        settings=rt.settings,
    )
    return {"requeued": recovered.requeued, "unknown": recovered.unknown}


PRUNE_BUDGET = 60.0  # seconds of deleting per beat run; the next run goes on


def prune(rt: Runtime) -> dict[str, int]:
    """The beat's retention (``models.retention``), when ``SMSQ_PRUNE_AFTER_DAYS`` is set."""
    days = rt.settings.prune_after_days
    if not days:
        return {}
    pruned = retention.prune(
        rt.sessions,
        older_than=dt.timedelta(days=days),
        idempotency_ttl=rt.settings.idempotency_ttl,
        now=rt.now(),
        budget=PRUNE_BUDGET,
    )
    counts = {
        "messages": pruned.messages,
        "events": pruned.events,
        "campaigns": pruned.campaigns,
        "webhooks": pruned.webhooks,
        "idempotency_records": pruned.idempotency_records,
    }
    log.info("pruned", complete=pruned.complete, **counts)
    return counts


def register(app: Any, runtime: ProcessRuntime) -> None:
    """Bind the tasks to ``app``; each runs on the process's runtime."""

    @app.task(name=TASK_SEND, shared=False, bind=True)
    def send_messages_task(
        task: Any, ids: list[str], resend_unknown: bool = False
    ) -> dict[str, int]:
        queue = (task.request.delivery_info or {}).get("routing_key")
        return send_messages(runtime.get(), ids, resend_unknown, urgent=queue == QUEUE_OTP)

    @app.task(name=TASK_START_CAMPAIGN, shared=False)
    def start_campaign_task(campaign_id: str) -> int:
        return start_campaign_batches(runtime.get(), campaign_id)

    @app.task(name=TASK_PROMOTE, shared=False)
    def promote_scheduled_task() -> int:
        return promote_scheduled(runtime.get())

    @app.task(name=TASK_SWEEP, shared=False)
    def sweep_task() -> dict[str, int]:
        return sweep(runtime.get())

    @app.task(name=TASK_RECOVER_OWNERS, shared=False)
    def recover_owners_task() -> dict[str, int]:
        return recover_owners(runtime.get())

    @app.task(name=TASK_PRUNE, shared=False)
    def prune_task() -> dict[str, int]:
        return prune(runtime.get())
