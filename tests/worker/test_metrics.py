"""Worker metrics: what a Prometheus scrape shows after sending, and the endpoint.

Counters live in the process's default registry and other tests send too, so
every assertion is on the change across the action under test.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from celery import Celery
from celery.signals import worker_init, worker_shutdown
from prometheus_client import REGISTRY, generate_latest

import worker.metrics
from providers.base import Rejected
from providers.errors import TransportError
from worker.metrics import (
    MULTIPROC_ENV,
    BreakerCollector,
    QueueDepthCollector,
    install,
    serving_registry,
    start_metrics_server,
)
from worker.provider_health import BreakerSettings, ProviderHealth
from worker.sending import send_batch

Samples = Callable[[], float]


def sample(name: str, **labels: str) -> Samples:
    """The current value of one sample (0 when it does not exist yet)."""
    return lambda: REGISTRY.get_sample_value(name, labels) or 0.0


def change(*readers: Samples) -> Callable[[], list[float]]:
    before = [read() for read in readers]
    return lambda: [read() - b for read, b in zip(readers, before, strict=True)]


async def test_sent_messages_are_counted_with_latency_and_bucket_wait(
    harness: Any, queued: Callable[..., list[Any]]
) -> None:
    messages = queued(5)
    delta = change(
        sample("smsq_messages_total", status="sent", provider="panel", code=""),
        sample("smsq_send_latency_seconds_count", provider="panel"),
        sample("smsq_bucket_wait_seconds_count", provider="panel"),
    )
    await send_batch(harness.ctx, [m.id for m in messages])
    sent, calls, waits = delta()
    assert sent == 5
    assert calls >= 1  # one observation per adapter call
    assert waits >= 1  # one per grant, even without waiting


async def test_failures_and_retries_are_counted_by_provider_code(
    harness: Any, queued: Callable[..., list[Any]]
) -> None:
    harness.sim.config.patch({"barred_prefixes": ["4915550"]})
    [barred] = queued(1)
    delta = change(sample("smsq_messages_total", status="failed", provider="panel", code="11"))
    await send_batch(harness.ctx, [barred.id])
    assert delta() == [1]

    harness.sim.config.patch({"barred_prefixes": [], "queue_full_ratio": 1.0, "retry_after": 2})
    [full] = queued(1)
    delta = change(
        sample("smsq_messages_total", status="queued", provider="panel", code="6"),
        sample("smsq_retries_total", provider="panel", code="6"),
    )
    await send_batch(harness.ctx, [full.id])
    assert delta() == [1, 1]


async def test_rows_given_back_by_a_slow_bucket_are_counted(
    harness: Any, queued: Callable[..., list[Any]]
) -> None:
    harness.rates["panel"] = (0.1, 1)  # one token per 10 s: more than the 5 s a batch waits
    messages = queued(3)
    delta = change(sample("smsq_bucket_released_messages_total", provider="panel"))
    result = await send_batch(harness.ctx, [m.id for m in messages])
    assert result.released == 2 and delta() == [2]


async def test_an_outcome_log_line_names_the_message_not_its_text(
    harness: Any, queued: Callable[..., list[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    [message] = queued(1, text="Your code is 424242", kind="otp")
    caplog.set_level(logging.DEBUG, logger="smsq.worker")
    await send_batch(harness.ctx, [message.id])
    [line] = [
        r.msg
        for r in caplog.records
        if isinstance(r.msg, dict) and r.msg.get("event") == "message outcome"
    ]
    assert line["message_id"] == message.id and line["provider"] == "panel"
    assert line["attempt"] == 1 and line["status"] == "sent"
    assert "424242" not in caplog.text and message.to not in caplog.text


def test_queue_depth_is_read_from_the_broker_when_scraped(redis_client: redis.Redis) -> None:
    redis_client.rpush("otp", "a", "b")
    redis_client.rpush("campaign\x06\x163", "c")  # a priority step counts too
    registry = serving_registry(lambda: redis_client)
    assert registry.get_sample_value("smsq_queue_depth", {"queue": "otp"}) == 2
    assert registry.get_sample_value("smsq_queue_depth", {"queue": "campaign"}) == 1
    assert registry.get_sample_value("smsq_queue_depth", {"queue": "transactional"}) == 0


def test_a_dead_broker_gives_no_depth_and_no_failed_scrape() -> None:
    dead = redis.Redis(port=1, socket_connect_timeout=0.2)
    collector = QueueDepthCollector(lambda: dead)
    [family] = list(collector.collect())
    assert family.name == "smsq_queue_depth" and family.samples == []
    [family] = list(QueueDepthCollector(lambda: None).collect())  # not a Redis broker
    assert family.samples == []


def test_circuit_breakers_are_read_from_redis_when_scraped(redis_client: redis.Redis) -> None:
    limits = BreakerSettings(failures=2)
    panel = ProviderHealth(redis_client, "panel", limits)
    brand = ProviderHealth(redis_client, "brand", limits)
    panel.record([Rejected("m", TransportError("refused"))] * 2)
    registry = serving_registry(breakers=lambda: [panel, brand])

    def state(provider: str, name: str) -> float | None:
        return registry.get_sample_value(
            "smsq_provider_breaker_state", {"provider": provider, "state": name}
        )

    assert [state("panel", s) for s in ("closed", "open", "half-open")] == [0, 1, 0]
    assert [state("brand", s) for s in ("closed", "open", "half-open")] == [1, 0, 0]
    since = registry.get_sample_value("smsq_provider_breaker_since_seconds", {"provider": "panel"})
    assert since is not None and abs(since - time.time()) < 60
    assert (
        registry.get_sample_value("smsq_provider_breaker_since_seconds", {"provider": "brand"})
        is None
    )


def test_a_dead_redis_gives_no_breaker_samples_and_no_failed_scrape() -> None:
    dead = redis.Redis(port=1, socket_connect_timeout=0.2)
    families = list(BreakerCollector(lambda: [ProviderHealth(dead, "panel")]).collect())
    assert [f.samples for f in families] == [[], []]


def test_the_endpoint_serves_the_process_metrics_and_queue_depth(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    redis_client.rpush("transactional", "x")
    server = start_metrics_server(0, addr="127.0.0.1", broker=lambda: redis_client)
    try:
        answer = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5)
    finally:
        server.stop()
    assert answer.status_code == 200
    assert "# TYPE smsq_messages_total counter" in answer.text
    assert "# TYPE smsq_send_latency_seconds histogram" in answer.text
    assert 'smsq_queue_depth{queue="transactional"} 1.0' in answer.text


CHILD = """
from worker.metrics import MESSAGES, SEND_LATENCY
MESSAGES.labels(status="sent", provider="panel", code="0").inc({n})
SEND_LATENCY.labels(provider="panel").observe(0.2)
"""


def test_prefork_children_are_summed_in_multiprocess_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "prometheus"  # not tmp_path itself: a SQLite test database is a .db
    directory.mkdir()
    env = {"PATH": "/usr/bin:/bin", MULTIPROC_ENV: str(directory)}
    for n in (3, 4):  # two "children", each with its own memory
        subprocess.run([sys.executable, "-c", CHILD.format(n=n)], env=env, check=True)
    monkeypatch.setenv(MULTIPROC_ENV, str(directory))
    registry = serving_registry()
    labels = {"status": "sent", "provider": "panel", "code": "0"}
    assert registry.get_sample_value("smsq_messages_total", labels) == 7
    assert registry.get_sample_value("smsq_send_latency_seconds_count", {"provider": "panel"}) == 2


class FakeWorker:
    """What a ``worker_init`` sender offers the handlers: its app."""

    def __init__(self, app: Celery) -> None:
        self.app = app


@pytest.fixture
def celery_app() -> Iterator[Celery]:
    app = Celery("metrics-test", set_as_current=False)
    yield app


def test_the_worker_serves_metrics_from_start_to_shutdown(
    celery_app: Celery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path / "mp"))
    # As under `smsq worker`, which sets the directory before prometheus_client is imported.
    monkeypatch.setattr(worker.metrics, "multiprocess_values", lambda: True)
    (tmp_path / "mp").mkdir()
    (tmp_path / "mp" / "counter_123.db").write_bytes(b"stale")  # a previous run's
    (tmp_path / "mp" / "notes.txt").write_text("not ours")
    hooks = install(celery_app, port=0, broker_url="memory://")
    try:
        worker_init.send(sender=FakeWorker(Celery("other", set_as_current=False)))
        assert hooks.server is None  # another app's worker: not ours
        worker_init.send(sender=FakeWorker(celery_app))
        assert hooks.server is not None
        assert [p.name for p in (tmp_path / "mp").iterdir()] == ["notes.txt"]
        answer = httpx.get(f"http://127.0.0.1:{hooks.server.port}/metrics", timeout=5)
        assert answer.status_code == 200
        worker_shutdown.send(sender=None)
        assert hooks.server is None
    finally:
        hooks.on_worker_shutdown()
        hooks.disconnect()


def test_without_a_port_nothing_is_served(celery_app: Celery) -> None:
    hooks = install(celery_app, port=None, broker_url="memory://")
    try:
        worker_init.send(sender=FakeWorker(celery_app))
        assert hooks.server is None
    finally:
        hooks.disconnect()


def test_exposition_has_no_message_ids() -> None:
    text = generate_latest(REGISTRY).decode()
    for line in text.splitlines():
        if line.startswith("smsq_") and "{" in line:
            labels = line[line.index("{") + 1 : line.index("}")]
            names = {pair.split("=")[0] for pair in labels.split(",") if pair}
            assert names <= {
                "status",
                "provider",
                "code",
                "queue",
                "adapter",
                "le",
                "route",
                "method",
            }


def test_a_directory_set_too_late_is_left_alone_and_reported(
    celery_app: Celery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    (tmp_path / "counter_1.db").write_bytes(b"")
    hooks = install(celery_app, port=0, broker_url="memory://")
    try:
        worker_init.send(sender=FakeWorker(celery_app))
        assert hooks.server is not None
        assert (tmp_path / "counter_1.db").exists()
        assert "metrics.multiprocess_too_late" in caplog.text
    finally:
        hooks.on_worker_shutdown()
        hooks.disconnect()
