"""The whole pipeline, for real: PostgreSQL, Redis as broker and throttle
store, Celery workers and beat as separate processes, the provider simulator
over HTTP, and our delivery-report receiver over HTTP.

``live`` builds a stack per test; its options set the providers' rates and
the simulator's faults. Processes are stopped and the database emptied after
each test.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
import redis
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from models.db import make_engine, make_sessionmaker
from models.tables import Message
from producer.api import Producer
from providers.simulator import SimConfig, Simulator, SimulatorServer, run_in_thread
from smsq.core.settings import Settings, get_settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).parent / "celery")
UVICORN = str(Path(sys.executable).parent / "uvicorn")
CALLBACK_KEY = "cb-secret"

PROVIDERS = """
[providers.panel]
adapter = "panelsms"
url = "{panel_url}"
user = "demo@example.com"
api_key = "demo-panel-key"
sender = "SMSQ"
rate = {panel_rate}
burst = {panel_burst}

[providers.brand]
adapter = "brand"
url = "{sim}/brand/send"
key = "demo-brand-key"
brand_id = "SMSQ"
callback_key = "{callback_key}"
max_numbers = 500
rate = {brand_rate}
burst = {brand_burst}
"""


@dataclass
class Live:
    settings: Settings
    env: dict[str, str]
    sim: Simulator
    sessions: sessionmaker[Session]
    tmp: Path
    redis: redis.Redis
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    handles: list[IO[bytes]] = field(default_factory=list)
    producers: list[Producer] = field(default_factory=list)

    def producer(self) -> Producer:
        """A producer on this stack's database and broker (closed at the end)."""
        producer = Producer.from_settings(self.settings)
        self.producers.append(producer)
        return producer

    # --- processes ---------------------------------------------------------
    def worker(self, queues: str, concurrency: int = 2, name: str = "w") -> subprocess.Popen[bytes]:
        log = self.tmp / f"{name}.log"
        process = self._spawn(
            [
                CELERY,
                "-A",
                "worker.app",
                "worker",
                "-Q",
                queues,
                "-c",
                str(concurrency),
                "-P",
                "prefork",
                "-n",
                f"{name}@%h",
                "-l",
                "info",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            log,
        )
        self._wait_for_line(log, " ready.", process)
        return process

    def beat(self) -> subprocess.Popen[bytes]:
        log = self.tmp / "beat.log"
        return self._spawn(
            [
                CELERY,
                "-A",
                "worker.app",
                "beat",
                "-s",
                str(self.tmp / "beat-schedule"),
                "-l",
                "info",
            ],
            log,
        )

    def _spawn(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        handle = log.open("wb")
        self.handles.append(handle)
        process = subprocess.Popen(
            argv,
            cwd=REPO,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        self.logs.append(log)
        return process

    def _wait_for_line(self, log: Path, text: str, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if text in log.read_text(errors="replace"):
                return
            if process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(
            f"{log.name} did not start:\n{log.read_text(errors='replace')[-3000:]}"
        )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        for handle in self.handles:
            handle.close()
        for producer in self.producers:
            producer.close()
        archive = os.environ.get("SMSQ_TEST_LOG_ARCHIVE")  # for the secret scan (tests/zz_logs)
        for log in self.logs if archive else []:
            shutil.copyfile(log, Path(archive) / f"{uuid.uuid4().hex[:8]}-{log.name}")

    def log_tail(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in self.logs
        )

    # --- observing ---------------------------------------------------------
    def counts(self, **where: Any) -> dict[str, int]:
        with self.sessions() as session:
            query = select(Message.status, func.count()).group_by(Message.status)
            for column, value in where.items():
                query = query.where(getattr(Message, column) == value)
            return {status: n for status, n in session.execute(query)}

    def count_sent_at(self) -> int:
        """Messages whose send time the worker has written."""
        with self.sessions() as session:
            query = select(func.count()).where(Message.sent_at.is_not(None))
            return session.scalar(query) or 0

    def wait_until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.2)
        raise AssertionError(
            f"timed out after {timeout} s waiting for {what}; "
            f"statuses {self.counts()}\n{self.log_tail()}"
        )

    def settled(self, read: Callable[[], int], quiet: float, timeout: float, what: str) -> int:
        """``read()`` once it has not changed for ``quiet`` seconds (a machine under
        load takes longer to finish what was in flight than an idle one)."""
        last, since = read(), time.monotonic()
        deadline = since + timeout
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now_value = read()
            if now_value != last:
                last, since = now_value, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return last
        raise AssertionError(f"{what} still changing after {timeout} s\n{self.log_tail()}")

    def all_in(self, status: str, total: int, **where: Any) -> Callable[[], bool]:
        return lambda: self.counts(**where).get(status, 0) == total


@pytest.fixture
def live(
    postgres_url: str, real_redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Live]]:
    started: list[tuple[Live, SimulatorServer, Engine]] = []

    def build(
        *,
        panel_rate: float = 2000,
        panel_burst: int = 200,
        brand_rate: float = 5000,
        brand_burst: int = 1000,
        sim: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        routes: str = "",
        panel_url: str | None = None,
    ) -> Live:
        """``routes``: ``[[routes]]`` tables appended to the providers file;
        ``panel_url``: where the panel account sends instead of the simulator."""
        client = redis.Redis.from_url(real_redis_url)
        client.flushdb()
        api_port = _free_port()
        api_url = f"http://127.0.0.1:{api_port}"
        simulator = Simulator(
            SimConfig(
                brand_callback_url=f"{api_url}/dlr/brand",
                brand_callback_key=CALLBACK_KEY,
                dlr_delay=0.2,
                **(sim or {}),
            )
        )
        sim_server = run_in_thread(simulator)
        providers = tmp_path / "providers.toml"
        providers.write_text(
            PROVIDERS.format(
                sim=sim_server.url,
                panel_url=panel_url or f"{sim_server.url}/sendMtSms.php",
                panel_rate=panel_rate,
                panel_burst=panel_burst,
                brand_rate=brand_rate,
                brand_burst=brand_burst,
                callback_key=CALLBACK_KEY,
            )
            + routes
        )
        smsq_env = {
            "SMSQ_DATABASE_URL": postgres_url,
            "SMSQ_REDIS_URL": real_redis_url,
            "SMSQ_BROKER_URL": real_redis_url,
            "SMSQ_PROVIDERS_FILE": str(providers),
            "SMSQ_DEFAULT_PROVIDER": "panel",
            "SMSQ_PUBLIC_URL": api_url,
            "SMSQ_PROMOTE_INTERVAL": "0.5",
            "SMSQ_SWEEP_INTERVAL": "1",
            "SMSQ_REQUEUE_AFTER": "5",
            "SMSQ_RETRY_CAP": "5",
            "SMSQ_UNKNOWN_RESEND_AFTER": "5",
            **(env or {}),
        }
        for key, value in smsq_env.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        settings = Settings()
        engine = make_engine(postgres_url)
        stack = Live(
            settings=settings,
            env={**os.environ, **smsq_env, "PYTHONUNBUFFERED": "1"},
            sim=simulator,
            sessions=make_sessionmaker(engine),
            tmp=tmp_path,
            redis=client,
        )
        # The receiver runs in its own process, as in production: in this one it
        # would share the GIL with the simulator and the test.
        api = stack._spawn(
            [
                UVICORN,
                "--factory",
                "smsq.api_app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(api_port),
                "--log-level",
                "info",  # with the access log: the secret scan (tests/zz_logs) reads it
            ],
            tmp_path / "api.log",
        )
        _wait_for_http(f"{api_url}/healthz", api)
        started.append((stack, sim_server, engine))
        return stack

    yield build
    for stack, sim_server, engine in started:
        stack.stop()
        sim_server.stop()
        engine.dispose()
        stack.redis.flushdb()
        stack.redis.close()
    get_settings.cache_clear()


def _wait_for_http(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
