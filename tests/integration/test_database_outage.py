"""PostgreSQL stopped and started under load: the API fails fast, never wedges,
and works again as soon as the database is back (issue 10).

Regression: with requests in flight when PostgreSQL went away, ``smsq api``
stopped answering altogether -- even ``/healthz`` -- for good. Each failed
request logged a rich traceback (every frame's locals rendered, seconds per
traceback) while holding the log handler's lock, which the event loop needs
too; now tracebacks are plain and the database being away is a 503
``unavailable`` with ``Retry-After`` that logs one line.

These tests run on a PostgreSQL of their own (:mod:`tests.integration.scratch_postgres`)
so stopping it disturbs no other test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy import func, select, text

from models.db import make_engine
from models.migrate import upgrade
from models.tables import Message
from producer.errors import Unavailable
from producer.keys import create_key
from tests.integration.conftest import Live
from tests.integration.scratch_postgres import ScratchPostgres

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scratch() -> Iterator[ScratchPostgres]:
    try:
        server = ScratchPostgres()
    except (FileNotFoundError, RuntimeError) as exc:
        from tests.conftest import need_service

        need_service("a PostgreSQL server of the test's own", exc)
        raise
    server.start()
    admin = make_engine(server.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE DATABASE smsq"))
    admin.dispose()
    upgrade(server.url("smsq"))
    yield server
    server.remove()


@pytest.fixture
def postgres_url(scratch: ScratchPostgres) -> str:
    """The ``live`` stack's database: the scratch server (overrides the run's)."""
    return scratch.url("smsq")


@dataclass
class Load:
    """Threads posting single sends until stopped; every answer is kept."""

    url: str
    key: str
    answers: list[tuple[float, int | str, float, httpx.Response | None]] = field(
        default_factory=list
    )
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, threads: int) -> None:
        for n in range(threads):
            thread = threading.Thread(target=self._run, args=(n,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def _run(self, n: int) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(base_url=self.url, timeout=10) as http:
            i = 0
            while not self._stop.is_set():
                i += 1
                body = {"to": f"+4915123{n:02d}{i % 10_000:04d}", "text": "Load"}
                started = time.monotonic()
                try:
                    response = http.post("/v1/messages", json=body, headers=headers)
                    status: int | str = response.status_code
                except httpx.HTTPError as exc:
                    response, status = None, type(exc).__name__
                self.answers.append((started, status, time.monotonic() - started, response))

    def statuses(self, since: float = 0.0) -> dict[int | str, int]:
        counts: dict[int | str, int] = {}
        for started, status, _, _ in list(self.answers):
            if started >= since:
                counts[status] = counts.get(status, 0) + 1
        return counts


def probe_healthz(url: str, stop: threading.Event, latencies: list[float]) -> None:
    with httpx.Client(base_url=url, timeout=5) as http:
        while not stop.is_set():
            started = time.monotonic()
            try:
                ok = http.get("/healthz").status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.monotonic() - started if ok else float("inf"))
            time.sleep(0.05)


def wait_for(check: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``check()`` held; fails after ``timeout``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"not within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - started


def test_the_api_fails_fast_and_recovers_when_postgresql_restarts_under_load(
    live: Callable[..., Live], scratch: ScratchPostgres
) -> None:
    stack = live(env={"SMSQ_API_RATE_LIMIT": "1000000"})
    with stack.sessions() as session:
        _row, key = create_key(session, "outage")
    url = stack.settings.public_url
    load = Load(url, key)
    stop_probe, healthz = threading.Event(), list[float]()
    prober = threading.Thread(target=probe_healthz, args=(url, stop_probe, healthz), daemon=True)
    load.start(threads=8)
    prober.start()
    try:
        wait_for(lambda: load.statuses().get(202, 0) >= 50, timeout=20)
        scratch.stop()
        down_at = time.monotonic()

        # While it is down: 503 with Retry-After for what needs the database,
        # /readyz names it, the Python API raises Unavailable quickly.
        wait_for(lambda: load.statuses(since=down_at).get(503, 0) >= 20, timeout=10)
        ready = httpx.get(f"{url}/readyz", timeout=5)
        assert ready.status_code == 503 and ready.json()["failed"] == ["database"]
        producer = stack.producer()
        started = time.monotonic()
        with pytest.raises(Unavailable) as raised:
            producer.send("+4915123000000", "While down")
        assert time.monotonic() - started < 10
        assert raised.value.service == "database"
        time.sleep(max(0.0, 3 - (time.monotonic() - down_at)))

        scratch.start()
        up_at = time.monotonic()
        back_after = wait_for(lambda: load.statuses(since=up_at).get(202, 0) > 0, timeout=15)
        time.sleep(1)
    finally:
        load.stop()
        stop_probe.set()
        prober.join(10)
        if not scratch_is_up(scratch):
            scratch.start()

    unavailable = [r for _, s, _, r in load.answers if s == 503 and r is not None]
    assert unavailable, "no request was refused while the database was down"
    body = unavailable[0].json()
    assert body["error"]["code"] == "unavailable"
    assert unavailable[0].headers["Retry-After"].isdigit()
    assert set(load.statuses()) <= {202, 503}, load.statuses()  # never a timeout nor a 500
    slowest = max(elapsed for _, _, elapsed, _ in load.answers)
    assert slowest < 8, f"a request took {slowest:.1f} s"
    assert back_after < 10, f"sends worked again {back_after:.1f} s after PostgreSQL was back"
    assert healthz and max(healthz) < 1.0, f"/healthz slowest {max(healthz):.3f} s"

    # Every acknowledged send is stored: nothing a 202 promised was lost.
    accepted = {r.json()["id"] for _, s, _, r in load.answers if s == 202 and r is not None}
    with stack.sessions() as session:
        stored = session.scalar(select(func.count()).where(Message.id.in_(accepted)))
    assert stored == len(accepted)


def scratch_is_up(scratch: ScratchPostgres) -> bool:
    engine = make_engine(scratch.url(), connect_args={"connect_timeout": 2})
    try:
        with engine.connect():
            return True
    except Exception:
        return False
    finally:
        engine.dispose()
