"""Celery tasks of the status webhooks: thin, each runs a plain function.

Their state (the HTTP client, the outbox's settled event id, the database
sessions) is the process's :class:`worker.runtime.Runtime`, forgotten after a
fork with the rest of it. :func:`register` binds the tasks to a Celery app.
"""

from __future__ import annotations

from typing import Any

from smsq.core.names import TASK_DELIVER_WEBHOOK, TASK_DISPATCH_WEBHOOKS
from worker.runtime import ProcessRuntime, Runtime
from worker.webhooks.delivery import DeliveryContext, Outcome, WebhookConfig, deliver
from worker.webhooks.outbox import dispatch


def dispatch_webhooks(rt: Runtime) -> dict[str, int]:
    """Beat: status events → deliveries; lost deliveries enqueued again."""
    with rt.sessions() as session:
        result = dispatch(session, rt.outbox_cursor, now=rt.now())
    for delivery_id in result.created + result.requeued:
        rt.publisher.deliver_webhook(delivery_id)
    return {"created": len(result.created), "requeued": len(result.requeued)}


def deliver_webhook(rt: Runtime, delivery_id: str) -> str:
    ctx = DeliveryContext(
        sessions=rt.sessions,
        client=rt.webhook_client,
        config=WebhookConfig.from_settings(rt.settings),
        clock=rt.now,
    )
    result = deliver(ctx, delivery_id)
    if result.outcome is Outcome.RETRY:
        rt.publisher.deliver_webhook(delivery_id, countdown=result.countdown)
    return result.outcome.value


def register(app: Any, runtime: ProcessRuntime) -> None:
    """Bind the webhook tasks to ``app``; each runs on the process's runtime."""

    @app.task(name=TASK_DISPATCH_WEBHOOKS, shared=False)
    def dispatch_webhooks_task() -> dict[str, int]:
        return dispatch_webhooks(runtime.get())

    @app.task(name=TASK_DELIVER_WEBHOOK, shared=False)
    def deliver_webhook_task(delivery_id: str) -> str:
        return deliver_webhook(runtime.get(), delivery_id)
