"""The Celery app: ``celery -A worker.app worker -Q otp,transactional``.

Reliability settings (design notes): tasks are acknowledged late and rejected
when the worker process dies, so a task in flight is redelivered rather than
lost (claims make the redelivery harmless); prefetch 1 so an OTP never waits
behind tasks a busy process has reserved; a visibility timeout longer than any
ETA we set (checked by ``Settings``); JSON only; no result backend (outcomes
are in the database).

Before the pool forks, the worker's main process runs the startup checks
(:mod:`worker.startup_checks`) and exits non-zero on a setup that loses work.
"""

from __future__ import annotations

from typing import Any

import structlog
from celery import Celery
from celery.signals import worker_init, worker_process_init
from kombu.entity import Queue

from smsq import logs
from smsq.names import (
    QUEUE_CAMPAIGN,
    QUEUE_TRANSACTIONAL,
    QUEUE_WEBHOOKS,
    QUEUES,
    TASK_DELIVER_WEBHOOK,
    TASK_DISPATCH_WEBHOOKS,
    TASK_PROMOTE,
    TASK_SEND,
    TASK_START_CAMPAIGN,
    TASK_SWEEP,
)
from smsq.settings import get_settings
from worker import metrics as worker_metrics
from worker import runtime
from worker.startup_checks import StartupCheckFailed, check_worker_setup


def make_app() -> Celery:
    logs.configure()
    settings = get_settings()
    celery = Celery("smsq", include=["worker.tasks", "worker.webhooks.tasks"])
    celery.conf.update(
        broker_url=settings.effective_broker_url,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue=QUEUE_TRANSACTIONAL,
        task_routes={
            TASK_START_CAMPAIGN: {"queue": QUEUE_CAMPAIGN},
            TASK_PROMOTE: {"queue": QUEUE_TRANSACTIONAL},
            TASK_SWEEP: {"queue": QUEUE_TRANSACTIONAL},
            TASK_DISPATCH_WEBHOOKS: {"queue": QUEUE_WEBHOOKS},
            TASK_DELIVER_WEBHOOK: {"queue": QUEUE_WEBHOOKS},
        },
        beat_schedule={
            "promote-scheduled": {"task": TASK_PROMOTE, "schedule": settings.promote_interval},
            "sweep": {"task": TASK_SWEEP, "schedule": settings.sweep_interval},
            # On the webhooks queue so a slow customer endpoint never delays
            # sends; expiring, so a backlog does not replay stale dispatches.
            "dispatch-webhooks": {
                "task": TASK_DISPATCH_WEBHOOKS,
                "schedule": settings.promote_interval,
                "options": {"expires": max(10.0, settings.promote_interval * 10)},
            },
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_send_sent_event=True,
    )
    return celery


app = make_app()
worker_metrics.install(
    app,
    port=get_settings().metrics_port,
    broker_url=get_settings().effective_broker_url,
)


def _enqueue(ids: list[str], queue: str, countdown: float | None) -> None:
    app.send_task(TASK_SEND, args=[ids], queue=queue, countdown=countdown)


runtime.configure(lambda: _enqueue)


@worker_process_init.connect
def _fresh_resources_after_fork(**_: Any) -> None:
    runtime.reset_runtime()
    from worker.webhooks import tasks as webhook_tasks  # imports this module: not at the top

    webhook_tasks.reset()


@worker_init.connect
def _refuse_unsafe_setup(sender: Any = None, **_: Any) -> None:
    """Run the startup checks in the worker's main process, before the pool forks.

    Celery logs and swallows an ``Exception`` raised by a signal handler, so a
    refusal leaves as ``SystemExit``: the worker stops with the message on
    stderr and exit status 1.
    """
    celery = getattr(sender, "app", None)
    if celery is None or celery.main != app.main:
        return  # another Celery app in this process (tests): not ours to check
    try:
        check_worker_setup(
            get_settings(),
            broker_url=str(celery.conf.broker_url),
            broker_transport_options=celery.conf.broker_transport_options,
        )
    except StartupCheckFailed as exc:
        structlog.get_logger("smsq.startup").error("worker_refused", reason=str(exc))
        raise SystemExit(f"smsq worker refused to start: {exc}") from None
