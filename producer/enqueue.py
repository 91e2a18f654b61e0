"""Handing committed messages to the broker, by task name.

The producer never imports the worker: it publishes ``smsq.names`` task names
with ``send_task`` from a minimal Celery client app, so a web app that only
enqueues needs none of the worker's code (design notes).

A publish that fails is logged and reported as ``False``, never raised: by
then the message row is committed as ``queued``, and the worker's sweeper
re-enqueues queued rows whose broker message never came ("nothing accepted is
ever lost"). Raising would tell the caller the send failed, and a caller that
retries without an idempotency key would send the SMS twice. The publish
retry is short and bounded, so a dead broker costs a web request about two
seconds at most (connect and socket timeouts of 1-2 s, one retry), not a hang.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any, Protocol

import structlog
from celery import Celery

from smsq.names import QUEUE_CAMPAIGN, TASK_SEND, TASK_START_CAMPAIGN

log = structlog.get_logger("smsq.producer")

# kombu's publish retry: one more try right away after reconnecting, then a
# second after 0.2 s. Longer waits would hold a web request while the
# sweeper would deliver the message anyway.
PUBLISH_RETRY_POLICY: dict[str, float] = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}


class Enqueuer(Protocol):
    """Where committed work goes. Returns False when it could not be published."""

    def send_messages(
        self, ids: list[str], *, queue: str, eta: dt.datetime | None = None
    ) -> bool: ...

    def start_campaign(self, campaign_id: str, *, eta: dt.datetime | None = None) -> bool: ...


class CeleryEnqueuer:
    """Publishes smsq tasks to a Celery broker; the app is made on first use."""

    def __init__(
        self,
        broker_url: str,
        *,
        connect_timeout: float = 1.0,
        socket_timeout: float = 2.0,
        retry_policy: dict[str, float] | None = None,
    ) -> None:
        self.broker_url = broker_url
        self._connect_timeout = connect_timeout
        self._socket_timeout = socket_timeout
        self._retry_policy = dict(retry_policy or PUBLISH_RETRY_POLICY)
        self._app: Any = None
        self._lock = threading.Lock()

    @property
    def app(self) -> Any:
        """The client-only Celery app (no tasks, no result backend)."""
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._make_app()
        return self._app

    def _make_app(self) -> Any:
        app = Celery("smsq-producer", broker=self.broker_url, set_as_current=False)
        app.conf.update(
            task_serializer="json",
            accept_content=["json"],
            task_ignore_result=True,
            broker_connection_timeout=self._connect_timeout,
            broker_connection_max_retries=1,
            broker_transport_options={
                # Redis transport: without these a broker that accepts the
                # connection and never answers blocks the caller indefinitely.
                "socket_connect_timeout": self._connect_timeout,
                "socket_timeout": self._socket_timeout,
            },
            task_publish_retry=True,
            task_publish_retry_policy=self._retry_policy,
        )
        return app

    def send_messages(self, ids: list[str], *, queue: str, eta: dt.datetime | None = None) -> bool:
        """One ``smsq.send_messages`` task carrying ``ids``, on ``queue``."""
        return self._publish(TASK_SEND, [ids], queue=queue, eta=eta, count=len(ids))

    def start_campaign(self, campaign_id: str, *, eta: dt.datetime | None = None) -> bool:
        """One ``smsq.start_campaign`` task on the campaign queue."""
        return self._publish(
            TASK_START_CAMPAIGN, [campaign_id], queue=QUEUE_CAMPAIGN, eta=eta, count=1
        )

    def _publish(
        self, task: str, args: list[Any], *, queue: str, eta: dt.datetime | None, count: int
    ) -> bool:
        try:
            self.app.send_task(
                task,
                args=args,
                queue=queue,
                eta=eta,
                retry=True,
                retry_policy=self._retry_policy,
            )
        except Exception as exc:
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
