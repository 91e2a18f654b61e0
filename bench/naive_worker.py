"""The naive baseline for ``bench/throughput.py``: how a first version of a
job-queue SMS sender usually looks. One Celery task per message, a sync httpx
client, one commit per message, no claim, no batching, no shared throttle.

    celery -A bench.naive_worker worker -Q naive -c 2
"""

from __future__ import annotations

import os

import httpx
from celery import Celery
from sqlalchemy.orm import Session

from models.db import make_engine, make_sessionmaker
from models.tables import Message, utcnow

app = Celery("naive", broker=os.environ["SMSQ_BROKER_URL"])
app.conf.update(
    task_ignore_result=True, task_default_queue="naive", worker_hijack_root_logger=False
)

_sessions = None
_client: httpx.Client | None = None


def _session() -> Session:
    global _sessions
    if _sessions is None:
        _sessions = make_sessionmaker(make_engine(os.environ["SMSQ_DATABASE_URL"]))
    return _sessions()


def _http() -> httpx.Client:
    global _client
    if _client is None:
        _client = httpx.Client(timeout=10)
    return _client


@app.task(name="naive.send")
def send(message_id: str) -> None:
    with _session() as session:
        message = session.get(Message, message_id)
        if message is None:
            return
        response = _http().post(
            os.environ["NAIVE_PANELSMS_URL"],
            json={
                "user": "demo@example.com",
                "apiKey": "demo-panel-key",
                "to": message.to,
                "message": message.text,
                "transactionId": message.id,
                "responseType": "json",
            },
        )
        answer = response.json()["response"]
        message.status = "sent" if answer["status"] == "OK" else "failed"
        message.provider_message_id = answer.get("transactionId")
        message.attempts += 1
        message.sent_at = utcnow()
        session.commit()
