"""The whole smsq stack in one process, on no external service: the demo's engine.

What a fleet runs as separate processes runs here as threads:

- the provider simulator, twice (uvicorn, free ports): one for the panelsms
  account, one for the brand account, as two providers are two hosts (a
  rate limit or an outage of one leaves the other alone); both send
  delivery reports back to us. The providers file names both accounts and
  one route, ``bulk`` (campaigns on ``panel``, failing over to ``brand``:
  :data:`DEMO_ROUTES`);
- the HTTP API (uvicorn, a free port), for the delivery-report receiver,
  with its report applier (a thread that records the queued reports);
- Celery workers (thread pools) on an in-process broker
  (kombu's ``memory://``): one on ``otp,transactional``, one on ``campaign``,
  so an OTP never waits behind a campaign batch, as in production;
- the promoter (what ``smsq beat`` runs every second), called as a plain
  function by a thread. Not the sweeper: what it repairs (broker messages
  lost in a Redis restart, a worker that died holding a lease) cannot happen
  to a broker and workers that live and die with this process, and its scans
  would only compete with the demo for SQLite's write lock.

The database is a SQLite file in a temporary directory unless
``SMSQ_DATABASE_URL`` is set; the token buckets live in Redis at
``SMSQ_REDIS_URL`` when that variable is set and Redis answers, else in
fakeredis served over TCP in this process (Lua included), so every component
reaches it by URL exactly as it would reach Redis.

The components are the production ones, unchanged, each built from a
``Settings`` object (:attr:`EmbeddedStack.settings`): the environment's
``SMSQ_*`` with the stack's own database, Redis, broker, providers file and
public URL over them. Nothing is written to the environment. There is still
one stack per process: Celery's flag that stops a worker is process-wide.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import redis
import structlog

from providers.simulator import Simulator, SimulatorServer, run_in_thread
from providers.simulator.server import ServerThread
from smsq.core.settings import DEFAULT_PROVIDERS, Settings
from smsq.simulator_setup import simulator_config

if TYPE_CHECKING:
    from worker.app import Worker

log = structlog.get_logger("smsq.demo")

# Seconds between the broker polls of the in-process transport (kombu's
# default of 1 s would add up to a second to every OTP).
BROKER_POLL_INTERVAL = 0.01


@dataclass(frozen=True)
class StackOptions:
    """What differs from a production fleet; the rest comes from ``SMSQ_*``."""

    schedule_horizon: int = 5
    """Seconds: scheduled sends further away wait in the DB for the promoter."""
    retry_cap: float = 5.0
    """Longest backoff on codes 6/7: a short demo must not wait a minute for a retry."""
    batch_size: int = 100
    """Ids per campaign task."""
    bulk_threads: int = 2
    """Threads of the campaign worker: two keep panel's bucket busy at the
    demo's 200/s; more only compete with the OTP worker for the one process's
    GIL and SQLite turn (with 4, OTP p99 0.33-0.38 s; with 2, 0.19-0.20 s)."""
    sims: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Simulator settings (``SimConfig`` fields) to start with, by adapter
    (``panelsms``, ``brand``)."""


class StackError(RuntimeError):
    """The embedded stack cannot start; the message says what to do."""


def redis_answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        with contextlib.closing(client):
            return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False


class FakeRedisServer:
    """fakeredis behind a real TCP port, so clients made from a URL reach it."""

    def __init__(self) -> None:
        try:
            from fakeredis import TcpFakeServer
        except ImportError:  # a production install: fakeredis comes with the dev extra
            raise StackError(
                "no Redis answers at SMSQ_REDIS_URL and fakeredis is not installed: "
                "pip install 'fakeredis[lua]', or point SMSQ_REDIS_URL at a Redis"
            ) from None

        self._server = TcpFakeServer(("127.0.0.1", 0), server_type="redis")
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="smsq-fakeredis", daemon=True
        )
        self._thread.start()
        self.url = f"redis://127.0.0.1:{self._server.server_address[1]}/0"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


ADAPTERS = ("panelsms", "brand")
_PATHS = {"panelsms": "/sendMtSms.php", "brand": "/brand/send"}


# The demo's routes (docs/routing.md): campaigns go out on the panelsms
# account and fail over to the brand account, which recipients cannot tell
# apart (both show the sender SMSQ: panel's ``sender``, brand's ``brand_id``).
# OTPs and the scheduled message name the brand account itself, so they
# never ride the campaign's route.
DEMO_ROUTES: tuple[dict[str, Any], ...] = (
    {"name": "bulk", "kinds": ["campaign"], "accounts": ["panel", "brand"]},
)


def providers_toml(
    simulator_urls: dict[str, str], routes: tuple[dict[str, Any], ...] = DEMO_ROUTES
) -> str:
    """The built-in demo accounts, pointed at our simulators (by adapter), and ``routes``."""
    lines: list[str] = []
    for name, table in DEFAULT_PROVIDERS.items():
        lines.append(f"[providers.{name}]")
        for key, value in table.items():
            if key == "url":
                adapter = table["adapter"]
                value = f"{simulator_urls[adapter]}{_PATHS[adapter]}"
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    for route in routes:
        lines.append("[[routes]]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in route.items())
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return f"[{', '.join(_toml_value(item) for item in value)}]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


class WorkerThread:
    """A Celery worker consuming ``queues``, its consumer in a thread of its own.

    Its tasks run in a pool of ``threads`` threads; each thread makes its own
    :class:`worker.runtime.Runtime` (an event loop runs one batch at a time),
    all closed once the workers have stopped.
    """

    def __init__(self, app: Any, hostname: str, queues: list[str], threads: int) -> None:
        self.hostname = hostname
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.controller = app.WorkController(
            hostname=hostname,
            queues=queues,
            pool="threads",
            concurrency=threads,
            loglevel="WARNING",
            ready_callback=lambda *_: self._ready.set(),
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
        )
        self.thread = threading.Thread(target=self._run, name=f"smsq-{hostname}", daemon=True)

    def _run(self) -> None:
        try:
            self.controller.start()
        except BaseException as exc:  # a refused start (startup checks) is a SystemExit
            self._error = exc

    def start(self, timeout: float = 30.0) -> None:
        """Start consuming; raise when the worker stopped or did not start in time."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if not self.thread.is_alive() or time.monotonic() > deadline:
                reason = str(self._error) if self._error else "it did not start in time"
                raise StackError(f"worker {self.hostname} did not start: {reason}")


def stop_workers(workers: list[WorkerThread], timeout: float = 30.0) -> None:
    """Stop every worker of this process: Celery's flag is process-wide."""
    from celery.worker import state

    state.should_terminate = 0
    try:
        for worker in workers:
            worker.thread.join(timeout)
    finally:
        state.should_terminate = None


class EmbeddedStack:
    """Start with :meth:`start` (or ``with``); everything stops at :meth:`stop`."""

    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self._exit = contextlib.ExitStack()
        self._stop = threading.Event()
        self.settings = Settings()
        """What every component is built from; the stack's own values once started."""
        self.database_url = ""
        self.redis_url = ""
        self.embedded_redis = False
        self.embedded_database = False
        self.sims: dict[str, Simulator] = {}
        """The simulators, by adapter: ``panelsms`` and ``brand``."""
        self.sim_servers: dict[str, SimulatorServer] = {}
        """Their HTTP servers, by adapter (the demo's outage stops one listening)."""
        self.simulator_urls: dict[str, str] = {}
        self.api_url = ""
        self.worker: Worker | None = None

    # --- lifecycle -----------------------------------------------------------

    def start(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        tmp = Path(self._exit.enter_context(tempfile.TemporaryDirectory(prefix="smsq-demo-")))
        environment = Settings()
        given = environment.model_fields_set  # what SMSQ_* variables set
        self.embedded_database = "database_url" not in given
        self.database_url = (
            f"sqlite:///{tmp / 'demo.db'}" if self.embedded_database else environment.database_url
        )
        if "redis_url" in given and redis_answers(environment.redis_url):
            self.redis_url = environment.redis_url
        else:
            fake = FakeRedisServer()
            self._exit.callback(fake.stop)
            self.redis_url = fake.url
            self.embedded_redis = True
            # fakeredis answers no CONFIG GET: the workers' checks of Redis's
            # eviction and persistence settings can only warn about that.
            logging.getLogger("smsq.startup").setLevel(logging.ERROR)

        # The simulators first: their ports go into the providers file.
        base = Settings(providers_file=None)
        for adapter in ADAPTERS:
            sim = Simulator(simulator_config(base, **self.options.sims.get(adapter, {})))
            server = run_in_thread(sim)
            self._exit.callback(server.stop)
            self.sims[adapter] = sim
            self.sim_servers[adapter] = server
            self.simulator_urls[adapter] = server.url
        providers = tmp / "providers.toml"
        providers.write_text(providers_toml(self.simulator_urls), encoding="utf-8")

        o = self.options
        ours: dict[str, Any] = {
            "database_url": self.database_url,
            "redis_url": self.redis_url,
            "broker_url": "memory://",
            "providers_file": providers,
            "schedule_horizon": o.schedule_horizon,
            "retry_cap": o.retry_cap,
            "batch_size": o.batch_size,
        }
        from models.migrate import upgrade

        upgrade(self.database_url)

        from smsq.api_app import close_app_resources, create_app

        app = create_app(Settings(**ours))
        # Served with its lifespan: that runs the report applier, which moves
        # the delivery reports the receiver queued in Redis into the database.
        api = ServerThread(app).start()
        self._exit.callback(close_app_resources, app)
        self._exit.callback(api.stop)
        # The simulators stop before the API (callbacks unwind in reverse), so
        # the delivery reports they are sending as they stop still find it.
        for server in self.sim_servers.values():
            self._exit.callback(server.stop)
        self.api_url = api.url
        # Providers reach our receiver here; the adapters read it from the settings.
        self.settings = Settings(**ours, public_url=self.api_url)
        for sim in self.sims.values():
            sim.config.patch({"brand_callback_url": f"{self.api_url}/dlr/brand"})

        self._start_workers()
        beat = threading.Thread(target=self._beat, name="smsq-beat", daemon=True)
        beat.start()
        self._exit.callback(beat.join, 5)
        self._exit.callback(self._stop.set)  # runs first: callbacks unwind in reverse

    def _start_workers(self) -> None:
        from smsq.core.names import QUEUE_CAMPAIGN, QUEUE_OTP, QUEUE_TRANSACTIONAL
        from worker.app import make_worker

        worker = self.worker = make_worker(self.settings)
        app = worker.celery
        app.conf.update(
            broker_transport_options={
                **app.conf.broker_transport_options,
                "polling_interval": BROKER_POLL_INTERVAL,
            },
        )
        app.finalize()
        # The pool's threads find the app as Celery's default one (what `celery
        # worker` does in setup_worker_optimizations; WorkController does not).
        app.set_current()
        app.set_default()

        workers: list[WorkerThread] = []
        self._exit.callback(worker.close)  # after the workers and beat stopped
        self._exit.callback(stop_workers, workers)
        # One after the other: a worker's queue selection is set on the app
        # and read when its consumer starts.
        for hostname, queues, threads in (
            ("latency@demo", [QUEUE_OTP, QUEUE_TRANSACTIONAL], 2),
            ("bulk@demo", [QUEUE_CAMPAIGN], self.options.bulk_threads),
        ):
            thread = WorkerThread(app, hostname, queues, threads)
            workers.append(thread)
            thread.start()

    def _beat(self) -> None:
        """The promoter every ``SMSQ_PROMOTE_INTERVAL``, as ``smsq beat`` schedules it."""
        from worker.tasks import promote_scheduled

        interval = self.settings.promote_interval
        assert self.worker is not None  # started before the beat
        runtime = self.worker.runtime
        while not self._stop.wait(interval):
            try:
                promote_scheduled(runtime.get())
            except Exception as exc:  # keep beating: the next tick may succeed
                log.warning("demo promoter failed", error=f"{type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self._stop.set()
        self._exit.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
