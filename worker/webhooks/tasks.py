"""Celery tasks of the status webhooks: thin, each runs a plain function.

Per-process state (the HTTP client, the outbox's settled event id) is made on
first use and forgotten after a fork (``worker.app`` calls :func:`reset`), like
``worker.runtime``; the database sessions are the runtime's.
"""

from __future__ import annotations

import httpx

from smsq.names import QUEUE_WEBHOOKS, TASK_DELIVER_WEBHOOK, TASK_DISPATCH_WEBHOOKS
from worker.app import app
from worker.runtime import get_runtime
from worker.webhooks.delivery import DeliveryContext, Outcome, WebhookConfig, deliver
from worker.webhooks.outbox import OutboxCursor, dispatch
from worker.webhooks.sender import make_client

_client: httpx.Client | None = None
_cursor = OutboxCursor()


def reset() -> None:
    """Forget the parent's client and cursor after a fork (never close them)."""
    global _client, _cursor
    _client = None
    _cursor = OutboxCursor()


def _http_client() -> httpx.Client:
    global _client
    if _client is None:
        _client = make_client()
    return _client


def enqueue_delivery(delivery_id: str, countdown: float | None = None) -> None:
    app.send_task(
        TASK_DELIVER_WEBHOOK, args=[delivery_id], queue=QUEUE_WEBHOOKS, countdown=countdown
    )


@app.task(name=TASK_DISPATCH_WEBHOOKS)
def dispatch_webhooks() -> dict[str, int]:
    """Beat: status events → deliveries; lost deliveries enqueued again."""
    rt = get_runtime()
    with rt.sessions() as session:
        result = dispatch(session, _cursor, now=rt.now())
    for delivery_id in result.created + result.requeued:
        enqueue_delivery(delivery_id)
    return {"created": len(result.created), "requeued": len(result.requeued)}


@app.task(name=TASK_DELIVER_WEBHOOK)
def deliver_webhook(delivery_id: str) -> str:
    rt = get_runtime()
    ctx = DeliveryContext(
        sessions=rt.sessions,
        client=_http_client(),
        config=WebhookConfig.from_settings(rt.settings),
        clock=rt.now,
    )
    result = deliver(ctx, delivery_id)
    if result.outcome is Outcome.RETRY:
        enqueue_delivery(delivery_id, countdown=result.countdown)
    return result.outcome.value
