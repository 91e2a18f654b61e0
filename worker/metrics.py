"""Prometheus metrics of the worker, and the ``/metrics`` endpoint that serves them.

The metric objects live in the process's default registry, so the sending
code only increments them. Labels are low-cardinality by rule: ``provider``
(account name), ``route`` (a route of the providers file), ``status``,
``code`` (provider code or error class) and ``queue``; never a message or
campaign id.

Prefork: tasks run in child processes, each with its own memory. With
``PROMETHEUS_MULTIPROC_DIR`` set *before* ``prometheus_client`` is imported,
every process writes its values to files in that directory and the main
process serves their sum (``prometheus_client.multiprocess``). ``smsq
worker`` sets a fresh directory when it is unset; with plain ``celery -A
worker.app worker`` set it yourself (one directory per worker instance: it is
emptied when the worker starts). See ``docs/metrics.md``.

:func:`install` hooks this into Celery's signals: the main process starts the
HTTP server on ``SMSQ_METRICS_PORT`` (no server when unset), a child marks its
files dead when it exits. Queue depth is read from the broker at scrape time
(:class:`QueueDepthCollector`), only by the process that serves.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

import redis
import structlog
from celery import Celery
from celery.signals import worker_init, worker_process_shutdown, worker_shutdown
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    multiprocess,
    start_http_server,
    values,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from smsq.core.names import QUEUES
from worker.broker import queue_depth
from worker.provider_health import BreakerState, ProviderHealth

log = structlog.get_logger("smsq.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

MESSAGES = Counter(
    "smsq_messages",  # exported as smsq_messages_total
    "Worker outcomes of send attempts, by the status the message moved to "
    "(sent, queued = a retry, failed, expired, unknown) and the provider's code",
    ["status", "provider", "code"],
)
SEND_LATENCY = Histogram(
    "smsq_send_latency_seconds",
    "Duration of one adapter call (one provider request, or one concurrent panelsms chunk)",
    ["provider"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
BUCKET_WAIT = Histogram(
    "smsq_bucket_wait_seconds",
    "Time a batch waited for the provider's token bucket before a grant (0 = no wait)",
    ["provider"],
    buckets=(0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
)
BUCKET_RELEASED = Counter(
    "smsq_bucket_released_messages",  # exported as smsq_bucket_released_messages_total
    "Messages given back unsent because the bucket would have made them wait too long",
    ["provider"],
)
BREAKER_HELD = Counter(
    "smsq_breaker_held_messages",  # exported as smsq_breaker_held_messages_total
    "Messages given back unsent (no attempt spent) because the provider's circuit "
    "breaker was open (worker.provider_health)",
    ["provider"],
)
ROUTE_MESSAGES = Counter(
    "smsq_route_messages",  # exported as smsq_route_messages_total
    "Outcomes of send attempts of routed messages (docs/routing.md), by route, the "
    "account that carried the attempt and the status the message moved to: the "
    'route\'s split is rate(...{status="sent"}) by provider',
    ["route", "provider", "status"],
)
RETRIES = Counter(
    "smsq_retries",  # exported as smsq_retries_total
    "Retryable answers that were scheduled for another attempt, by provider code "
    "(or the error class when the provider gave none, e.g. ProviderUnavailable)",
    ["provider", "code"],
)

QUEUE_DEPTH_NAME = "smsq_queue_depth"


def code_label(code: int | str | None) -> str:
    """The ``code`` label: the provider's code, or ``""`` when there is none."""
    return "" if code is None else str(code)


class QueueDepthCollector(Collector):
    """``smsq_queue_depth{queue}``: messages waiting in each Celery queue, read when scraped.

    Read at scrape time rather than pushed, so the number is current and no
    worker has to poll. A broker that is not Redis, or does not answer,
    yields no samples (and a warning), never a failed scrape.
    """

    def __init__(self, client: Callable[[], redis.Redis | None], queues: Iterable[str] = QUEUES):
        self._client = client
        self._queues = tuple(queues)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            QUEUE_DEPTH_NAME, "Tasks waiting in the broker, per queue", labels=["queue"]
        )
        client = self._client()
        if client is not None:
            try:
                for queue in self._queues:
                    family.add_metric([queue], queue_depth(client, queue))
            except redis.RedisError as exc:
                log.warning("metrics.queue_depth_unavailable", error=type(exc).__name__)
                family = GaugeMetricFamily(
                    QUEUE_DEPTH_NAME, "Tasks waiting in the broker, per queue", labels=["queue"]
                )
        yield family


BREAKER_STATE_NAME = "smsq_provider_breaker_state"
BREAKER_SINCE_NAME = "smsq_provider_breaker_since_seconds"


class BreakerCollector(Collector):
    """``smsq_provider_breaker_state{provider,state}`` (1 for the account's current
    state: closed, open, half-open; 0 for the others) and
    ``smsq_provider_breaker_since_seconds{provider}`` (Unix time that state
    began; absent while closed and never opened), read from Redis when scraped
    (``worker.provider_health``). A Redis that does not answer yields no
    samples, never a failed scrape."""

    def __init__(self, breakers: Callable[[], Iterable[ProviderHealth]]) -> None:
        self._breakers = breakers

    def collect(self) -> Iterator[Metric]:
        try:
            families = self._families()
            for health in self._breakers():
                now = health.state()
                for state in BreakerState:
                    value = 1.0 if now.state is state else 0.0
                    families[0].add_metric([health.provider, state.value], value)
                if now.since is not None:
                    families[1].add_metric([health.provider], now.since.timestamp())
        except redis.RedisError as exc:
            log.warning("metrics.breaker_unavailable", error=type(exc).__name__)
            families = self._families()
        yield from families

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                BREAKER_STATE_NAME,
                "Circuit breaker of each provider account: 1 for its current state",
                labels=["provider", "state"],
            ),
            GaugeMetricFamily(
                BREAKER_SINCE_NAME,
                "Unix time the provider's circuit breaker entered its current state",
                labels=["provider"],
            ),
        )


class _DefaultRegistry(Collector):
    """The process's own default registry, as one collector of another registry."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def multiprocess_values() -> bool:
    """True when this process writes its values to files (chosen at the library's import)."""
    return values.ValueClass is not values.MutexValue


def serving_registry(
    broker: Callable[[], redis.Redis | None] | None = None,
    breakers: Callable[[], Iterable[ProviderHealth]] | None = None,
) -> CollectorRegistry:
    """The registry ``/metrics`` serves: all processes' values plus queue depth
    and the providers' circuit breakers.

    In multiprocess mode the values of every process (the files in
    ``PROMETHEUS_MULTIPROC_DIR``); otherwise this process's own.
    """
    registry = CollectorRegistry()
    if multiprocess_dir() is not None:
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_DefaultRegistry())
    if broker is not None:
        registry.register(QueueDepthCollector(broker))
    if breakers is not None:
        registry.register(BreakerCollector(breakers))
    return registry


_VALUE_FILE_KINDS = ("counter", "gauge", "histogram", "summary")


def clear_multiprocess_dir() -> None:
    """Remove the value files of a previous run (prometheus_client's advice)."""
    directory = multiprocess_dir()
    if directory is None:
        return
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    # Only prometheus_client's own files: the directory may hold anything else.
    for kind in _VALUE_FILE_KINDS:
        for stale in path.glob(f"{kind}_*.db"):
            stale.unlink(missing_ok=True)


class MetricsServer:
    """The HTTP server of ``/metrics`` in the worker's main process."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self.server = server
        self.thread = thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_metrics_server(
    port: int,
    *,
    addr: str = "0.0.0.0",
    broker: Callable[[], redis.Redis | None] | None = None,
    breakers: Callable[[], Iterable[ProviderHealth]] | None = None,
) -> MetricsServer:
    """Serve ``/metrics`` on ``port`` (0 = any free port) in a daemon thread."""
    registry = serving_registry(broker, breakers)
    server, thread = start_http_server(port, addr=addr, registry=registry)
    return MetricsServer(server, thread)


def broker_client(url: str) -> Callable[[], redis.Redis | None]:
    """A lazily made Redis client of the broker (``None`` for other brokers)."""
    made: list[redis.Redis | None] = []

    def client() -> redis.Redis | None:
        if not made:
            is_redis = url.startswith(("redis://", "rediss://", "unix://"))
            made.append(
                redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
                if is_redis
                else None
            )
        return made[0]

    return client


class WorkerMetrics:
    """The metrics' part in a Celery worker's life, as signal handlers.

    Main process, before the pool forks (``worker_init``): empty the
    multiprocess directory of an earlier run and serve ``/metrics`` on
    ``port``. Main process, at the end (``worker_shutdown``): stop serving.
    A child that exits (``worker_process_shutdown``): mark its files dead.
    """

    def __init__(
        self,
        app: Celery,
        *,
        port: int | None,
        broker_url: str,
        breakers: Callable[[], Iterable[ProviderHealth]] | None = None,
    ) -> None:
        self.app = app
        self.port = port
        self.broker_url = broker_url
        self.breakers = breakers
        self.server: MetricsServer | None = None

    def connect(self) -> WorkerMetrics:
        worker_init.connect(self.on_worker_init, weak=False)
        worker_shutdown.connect(self.on_worker_shutdown, weak=False)
        worker_process_shutdown.connect(self.on_child_exit, weak=False)
        return self

    def disconnect(self) -> None:
        worker_init.disconnect(self.on_worker_init)
        worker_shutdown.disconnect(self.on_worker_shutdown)
        worker_process_shutdown.disconnect(self.on_child_exit)

    def on_worker_init(self, sender: Any = None, **_: Any) -> None:
        if self.port is None or getattr(sender, "app", self.app) is not self.app:
            return  # nothing to serve, or another Celery app in this process (tests)
        if multiprocess_dir() is None:
            log.warning(
                "metrics.single_process",
                effect="only the main process's values are served; prefork children's "
                f"are not: set {MULTIPROC_ENV} (smsq worker does) to aggregate them",
            )
        elif not multiprocess_values():
            log.warning(
                "metrics.multiprocess_too_late",
                effect=f"{MULTIPROC_ENV} was set after prometheus_client was imported: "
                "this worker's values are not written there; set it before starting",
            )
        else:
            clear_multiprocess_dir()
        self.server = start_metrics_server(
            self.port, broker=broker_client(self.broker_url), breakers=self.breakers
        )
        log.info(
            "metrics.serving", port=self.server.port, multiprocess=multiprocess_dir() is not None
        )

    def on_worker_shutdown(self, **_: Any) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def on_child_exit(self, pid: int | None = None, **_: Any) -> None:
        if multiprocess_dir() is not None:
            multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]


def install(
    app: Celery,
    *,
    port: int | None,
    broker_url: str,
    breakers: Callable[[], Iterable[ProviderHealth]] | None = None,
) -> WorkerMetrics:
    """Connect the metrics to ``app``'s worker signals (call once, where the app is made).

    ``port`` ``None`` serves nothing (the metrics are still counted, and
    written to ``PROMETHEUS_MULTIPROC_DIR`` when it is set).
    """
    return WorkerMetrics(app, port=port, broker_url=broker_url, breakers=breakers).connect()
