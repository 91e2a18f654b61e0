"""The Celery app: ``celery -A worker.app worker -Q otp,transactional``.

Reliability settings (design notes): tasks are acknowledged late and rejected
when the worker process dies, so a task in flight is redelivered rather than
lost (claims make the redelivery harmless); prefetch 1 so an OTP never waits
behind tasks a busy process has reserved; a visibility timeout longer than any
ETA we set (checked by ``Settings``); JSON only; no result backend (outcomes
are in the database).

Nothing happens at import: :func:`make_worker` builds a worker from a
``Settings`` object (the Celery app, its tasks, the process's runtime, the
metrics and the startup checks hooked to the worker's signals). The module
attribute ``app`` is for ``celery -A worker.app``: Celery's ``find_app`` reads
``worker.app.app``, and this module's ``__getattr__`` (PEP 562) builds it from
the process's settings on that first read.

Before the pool forks, the worker's main process runs the startup checks
(:mod:`worker.startup_checks`) and exits non-zero on a setup that loses work.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import structlog
from celery import Celery
from celery.signals import worker_init, worker_process_init
from kombu.entity import Queue

from smsq.core import logs
from smsq.core.names import (
    QUEUE_CAMPAIGN,
    QUEUE_TRANSACTIONAL,
    QUEUE_WEBHOOKS,
    QUEUES,
    TASK_DELIVER_WEBHOOK,
    TASK_DISPATCH_WEBHOOKS,
    TASK_PROMOTE,
    TASK_PRUNE,
    TASK_RECOVER_OWNERS,
    TASK_START_CAMPAIGN,
    TASK_SWEEP,
)
from smsq.core.publisher import TaskPublisher
from smsq.core.settings import Settings, get_settings
from worker import metrics as worker_metrics
from worker import tasks
from worker.provider_health import provider_breakers
from worker.runtime import ProcessRuntime, Runtime
from worker.startup_checks import StartupCheckFailed, check_worker_setup
from worker.webhooks import tasks as webhook_tasks


def make_celery(settings: Settings) -> Celery:
    """The Celery app with smsq's configuration, no task yet."""
    celery = Celery("smsq")
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
            TASK_RECOVER_OWNERS: {"queue": QUEUE_TRANSACTIONAL},
            # Bulk work, bounded to PRUNE_BUDGET a run: never in front of an OTP.
            TASK_PRUNE: {"queue": QUEUE_CAMPAIGN},
            TASK_DISPATCH_WEBHOOKS: {"queue": QUEUE_WEBHOOKS},
            TASK_DELIVER_WEBHOOK: {"queue": QUEUE_WEBHOOKS},
        },
        beat_schedule=_beat_schedule(settings),
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_send_sent_event=True,
    )
    return celery


def _beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    schedule: dict[str, dict[str, Any]] = {
        "promote-scheduled": {"task": TASK_PROMOTE, "schedule": settings.promote_interval},
        "sweep": {"task": TASK_SWEEP, "schedule": settings.sweep_interval},
        # Dead workers' rows back within seconds (worker.recovery); expiring,
        # so a backlog of ticks collapses into the next one.
        "recover-owners": {
            "task": TASK_RECOVER_OWNERS,
            "schedule": settings.recover_interval,
            "options": {"expires": max(5.0, settings.recover_interval * 2)},
        },
        # On the webhooks queue so a slow customer endpoint never delays
        # sends; expiring, so a backlog does not replay stale dispatches.
        "dispatch-webhooks": {
            "task": TASK_DISPATCH_WEBHOOKS,
            "schedule": settings.promote_interval,
            "options": {"expires": max(10.0, settings.promote_interval * 10)},
        },
    }
    if settings.prune_after_days:
        schedule["prune"] = {
            "task": TASK_PRUNE,
            "schedule": settings.prune_interval,
            "options": {"expires": settings.prune_interval},
        }
    return schedule


@dataclass
class Worker:
    """A worker's parts, made by :func:`make_worker`: its app, runtime and hooks."""

    settings: Settings
    celery: Celery
    runtime: ProcessRuntime
    metrics: worker_metrics.WorkerMetrics

    def connect(self) -> Worker:
        worker_init.connect(self.refuse_unsafe_setup, weak=False)
        worker_process_init.connect(self.fresh_resources_after_fork, weak=False)
        return self

    def disconnect(self) -> None:
        """Unhook from Celery's signals (tests, the demo: more than one app per process)."""
        worker_init.disconnect(self.refuse_unsafe_setup)
        worker_process_init.disconnect(self.fresh_resources_after_fork)
        self.metrics.disconnect()

    def close(self) -> None:
        """Unhook and close the runtime, once the threads using it have stopped."""
        self.disconnect()
        self.runtime.close()

    def fresh_resources_after_fork(self, **_: Any) -> None:
        self.runtime.forget()

    def refuse_unsafe_setup(self, sender: Any = None, **_: Any) -> None:
        """Run the startup checks in the worker's main process, before the pool forks.

        Celery logs and swallows an ``Exception`` raised by a signal handler, so a
        refusal leaves as ``SystemExit``: the worker stops with the message on
        stderr and exit status 1.
        """
        celery = getattr(sender, "app", None)
        if celery is not self.celery:
            return  # another Celery app in this process (tests): not ours to check
        try:
            check_worker_setup(
                self.settings,
                broker_url=str(celery.conf.broker_url),
                broker_transport_options=celery.conf.broker_transport_options,
            )
        except StartupCheckFailed as exc:
            structlog.get_logger("smsq.startup").error("worker_refused", reason=str(exc))
            raise SystemExit(f"smsq worker refused to start: {exc}") from None


def make_worker(settings: Settings) -> Worker:
    """A worker built from ``settings``: nothing connects until it runs a task."""
    logs.configure_from(settings)
    celery = make_celery(settings)
    publisher = TaskPublisher(lambda: celery, fail_soft=False)
    runtime = ProcessRuntime(lambda: Runtime(settings, publisher))
    tasks.register(celery, runtime)
    webhook_tasks.register(celery, runtime)
    metrics = worker_metrics.install(
        celery,
        port=settings.metrics_port,
        broker_url=settings.effective_broker_url,
        breakers=provider_breakers(settings),
    )
    return Worker(settings, celery, runtime, metrics).connect()


def make_app(settings: Settings | None = None) -> Celery:
    """The Celery app of a worker built from ``settings`` (default: the environment's)."""
    return make_worker(settings or get_settings()).celery


_lock = threading.Lock()


def __getattr__(name: str) -> Any:
    """``worker.app.app``: the process's app, built on first read (``celery -A worker.app``)."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _lock:
        built = globals().get("app")
        if built is None:
            built = globals()["app"] = make_app()
    return built
