"""Publishing smsq's Celery tasks by name: the one publisher of the producer and the worker.

The producer never imports the worker: it publishes ``smsq.core.names`` task names
with ``send_task``, so a web app that only enqueues needs none of the
worker's code (design notes). The worker publishes the same tasks (retries,
campaign batches, the promoter's and the sweeper's work) through the same
class, on its own Celery app.

Two ways to fail, chosen by who publishes:

- ``fail_soft=True`` (the producer, operators' commands): a publish that fails
  is logged and reported as ``False``, never raised. By then the message row
  is committed as ``queued``, and the worker's sweeper re-enqueues queued rows
  whose broker message never came ("nothing accepted is ever lost"). Raising
  would tell the caller the send failed, and a caller that retries without an
  idempotency key would send the SMS twice.
- ``fail_soft=False`` (a worker's task): the error is raised, and the task
  fails as any task whose broker is gone.

The client app (:func:`client_app`) retries a publish briefly and boundedly,
so a dead broker costs a web request about two seconds at most (connect and
socket timeouts of 1-2 s, one retry), not a hang.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any, Protocol

import structlog
from celery import Celery

from smsq.core.names import (
    QUEUE_CAMPAIGN,
    QUEUE_WEBHOOKS,
    TASK_DELIVER_WEBHOOK,
    TASK_SEND,
    TASK_START_CAMPAIGN,
)

log = structlog.get_logger("smsq.core.publisher")

# kombu's publish retry: one more try right away after reconnecting, then a
# second after 0.2 s. Longer waits would hold a web request while the
# sweeper would deliver the message anyway.
PUBLISH_RETRY_POLICY: dict[str, float] = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}


class Publisher(Protocol):
    """Where work goes: the tasks smsq publishes. ``False``: not published (logged)."""

    def send_messages(
        self,
        ids: list[str],
        *,
        queue: str,
        eta: dt.datetime | None = None,
        countdown: float | None = None,
        resend_unknown: bool = False,
    ) -> bool: ...

    def start_campaign(
        self, campaign_id: str, *, eta: dt.datetime | None = None, queue: str = QUEUE_CAMPAIGN
    ) -> bool: ...

    def deliver_webhook(self, delivery_id: str, *, countdown: float | None = None) -> bool: ...


def client_app(
    broker_url: str,
    *,
    connect_timeout: float = 1.0,
    socket_timeout: float = 2.0,
    retry_policy: dict[str, float] | None = None,
) -> Celery:
    """A client-only Celery app (no tasks, no result backend) that publishes to ``broker_url``."""
    app = Celery("smsq-producer", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        broker_connection_timeout=connect_timeout,
        broker_connection_max_retries=1,
        broker_transport_options={
            # Redis transport: without these a broker that accepts the
            # connection and never answers blocks the caller indefinitely.
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": socket_timeout,
        },
        task_publish_retry=True,
        task_publish_retry_policy=dict(retry_policy or PUBLISH_RETRY_POLICY),
    )
    return app


class TaskPublisher:
    """Publishes smsq's tasks on a Celery app, made on first use by ``make_app``."""

    def __init__(
        self,
        make_app: Callable[[], Celery],
        *,
        fail_soft: bool,
        retry_policy: dict[str, float] | None = None,
    ) -> None:
        self._make_app = make_app
        self.fail_soft = fail_soft
        self._retry_policy = retry_policy
        self._app: Celery | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_broker(
        cls, broker_url: str, *, connect_timeout: float = 1.0, socket_timeout: float = 2.0
    ) -> TaskPublisher:
        """The producer's publisher: a client app on ``broker_url``, failures logged."""
        return cls(
            lambda: client_app(
                broker_url, connect_timeout=connect_timeout, socket_timeout=socket_timeout
            ),
            fail_soft=True,
            retry_policy=PUBLISH_RETRY_POLICY,
        )

    @property
    def app(self) -> Celery:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._make_app()
        return self._app

    def send_messages(
        self,
        ids: list[str],
        *,
        queue: str,
        eta: dt.datetime | None = None,
        countdown: float | None = None,
        resend_unknown: bool = False,
    ) -> bool:
        """One ``smsq.send_messages`` task carrying ``ids``, on ``queue``."""
        kwargs = {"resend_unknown": True} if resend_unknown else None
        return self.publish(
            TASK_SEND, [ids], kwargs, queue=queue, eta=eta, countdown=countdown, count=len(ids)
        )

    def start_campaign(
        self, campaign_id: str, *, eta: dt.datetime | None = None, queue: str = QUEUE_CAMPAIGN
    ) -> bool:
        """One ``smsq.start_campaign`` task, on the campaign queue."""
        return self.publish(TASK_START_CAMPAIGN, [campaign_id], queue=queue, eta=eta)

    def deliver_webhook(self, delivery_id: str, *, countdown: float | None = None) -> bool:
        """One ``smsq.deliver_webhook`` task, on the webhooks queue."""
        return self.publish(
            TASK_DELIVER_WEBHOOK, [delivery_id], queue=QUEUE_WEBHOOKS, countdown=countdown
        )

    def publish(
        self,
        task: str,
        args: list[Any],
        kwargs: dict[str, Any] | None = None,
        *,
        queue: str,
        eta: dt.datetime | None = None,
        countdown: float | None = None,
        count: int = 1,
    ) -> bool:
        """Any smsq task by name; ``count`` is how many messages it carries (for the log)."""
        options: dict[str, Any] = {"queue": queue}
        if eta is not None:
            options["eta"] = eta
        if countdown is not None:
            options["countdown"] = countdown
        if self._retry_policy is not None:
            options.update(retry=True, retry_policy=self._retry_policy)
        try:
            self.app.send_task(task, args=args, kwargs=kwargs, **options)
        except Exception as exc:
            if not self.fail_soft:
                raise
            # Any failure here (kombu's OperationalError for a dead broker, a
            # refused or timed-out socket, a serializer error) leaves committed
            # rows that the sweeper will enqueue; see the module docstring.
            log.error(
                "enqueue failed; the sweeper will re-enqueue",
                task=task,
                queue=queue,
                messages=count,
                error=f"{type(exc).__name__}: {exc}",
            )
            return False
        return True

    def close(self) -> None:
        """Release the broker connections (tests, shutdown)."""
        if self._app is not None:
            self._app.close()
