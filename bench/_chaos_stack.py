"""The stack one chaos scenario runs against, and what it can do to it.

Per scenario: a fresh database (on the suite's PostgreSQL), an empty Redis
(the suite's own server), and as processes in their own sessions the provider
simulator (``bench/_simulator.py``: ``smsq simulator`` that keeps its stats
when stopped), ``smsq api`` (the delivery-report receiver at
``SMSQ_PUBLIC_URL``), one Celery worker consuming ``otp,transactional,campaign``
and Celery beat (promoter and sweeper). Settings are the defaults except the
provider account: panelsms at ``--rate`` messages per second, delivery
reports on.

Other benchmarks (``bench/routing.py``) pass their own providers file (a
template formatted with ``sim`` and ``sim_<name>``: each simulator's URL),
more simulator processes by name (each can be stopped on its own) and extra
settings; the defaults are the chaos suite's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from bench._services import OwnRedis, Postgres
from bench._stack import BIN, ROOT, Stack, free_port
from models.db import make_engine
from models.tables import Campaign, Message

PROVIDERS = """
[providers.panel]
adapter = "panelsms"
url = "{sim}/sendMtSms.php"
user = "demo@example.com"
api_key = "demo-panel-key"
sender = "SMSQ"
response_type = "json"
rate = {rate}
burst = {rate}
dlr = true
timeout = {timeout}
"""
PENDING = ("accepted", "scheduled", "queued", "sending", "unknown")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc): a prefork worker's pool processes."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


SIMULATOR = "simulator"  # the name of the first (the chaos suite's only) simulator


class ChaosStack(Stack):
    def __init__(
        self,
        args: argparse.Namespace,
        tmp: Path,
        postgres: Postgres,
        redis: OwnRedis,
        *,
        providers_template: str = PROVIDERS,
        simulators: Sequence[str] = (SIMULATOR,),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.args = args
        redis.flush()
        self.redis = redis
        self.sim_ports = {name: free_port() for name in simulators}
        self.sim_urls = {name: f"http://127.0.0.1:{p}" for name, p in self.sim_ports.items()}
        self.sim_port = self.sim_ports[simulators[0]]
        self.sim_url = self.sim_urls[simulators[0]]
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        tmp.mkdir(parents=True, exist_ok=True)
        providers = tmp / "providers.toml"
        providers.write_text(
            providers_template.format(
                sim=self.sim_url,
                rate=args.rate,
                timeout=args.provider_timeout,
                **{f"sim_{name}": url for name, url in self.sim_urls.items()},
            )
        )
        super().__init__(
            postgres.url,
            tmp,
            {
                "SMSQ_REDIS_URL": redis.url,
                "SMSQ_BROKER_URL": redis.url,
                "SMSQ_PROVIDERS_FILE": str(providers),
                "SMSQ_DEFAULT_PROVIDER": "panel",
                "SMSQ_PUBLIC_URL": self.api_url,
                "SMSQ_API_RATE_LIMIT": "1000000",
                **(
                    {"SMSQ_INGEST_STALL_AFTER": str(args.ingest_stall_after)}
                    if args.ingest_stall_after is not None
                    else {}
                ),
                **(env or {}),
            },
        )
        # The driver's own reads must not hang while PostgreSQL is away.
        self.engine.dispose()
        self.engine = make_engine(self.db_url, connect_args={"connect_timeout": 2})
        self.named: dict[str, subprocess.Popen[bytes]] = {}
        self.spawns: Counter[str] = Counter()
        self.past_stats: dict[str, list[dict[str, Any]]] = {name: [] for name in simulators}
        self._stats_files: dict[str, Path] = {}
        try:
            for name in simulators:
                self.start_simulator(name)
            self.start_api()
            self.start_worker()
            self.start_beat()
            self.key = self._api_key()
        except BaseException:
            self.close()
            raise

    # --- processes ----------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        self.spawns[name] += 1
        n = self.spawns[name]
        process = self.spawn(argv, name if n == 1 else f"{name}-{n}")
        self.named[name] = process
        return process

    def _log_name(self, name: str) -> str:
        n = self.spawns[name]
        return name if n == 1 else f"{name}-{n}"

    def start_simulator(self, name: str = SIMULATOR) -> None:
        stats_file = self.tmp / f"{name}-stats-{self.spawns[name] + 1}.json"
        self._stats_files[name] = stats_file
        self._spawn(
            name,
            [
                str(BIN / "python"),
                str(ROOT / "bench" / "_simulator.py"),
                "--port",
                str(self.sim_ports[name]),
                "--latency-ms",
                str(self.args.latency_ms),
                "--stats-file",
                str(stats_file),
            ],
        )
        self.wait_http(f"{self.sim_urls[name]}/_stats")

    def stop_simulator(self, name: str = SIMULATOR) -> None:
        """SIGTERM: uvicorn answers what is in flight, refuses new connections, exits."""
        process = self.named[name]
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
        self.past_stats[name].append(json.loads(self._stats_files[name].read_text()))

    def start_api(self) -> None:
        self._spawn("api", [str(BIN / "smsq"), "api", "--port", str(self.api_port)])
        self.wait_http(f"{self.api_url}/healthz")

    def kill_api(self) -> None:
        process = self.named["api"]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def start_worker(self) -> None:
        process = self._spawn(
            "worker",
            [
                str(BIN / "celery"),
                "-A",
                "worker.app",
                "worker",
                "-Q",
                "otp,transactional,campaign",
                "-c",
                str(self.args.workers),
                "-P",
                "prefork",
                "-n",
                "chaos@%h",
                "-l",
                "info",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
        )
        self.wait_for_log(process, self._log_name("worker"), " ready.")

    def start_beat(self) -> None:
        process = self._spawn(
            "beat",
            [
                str(BIN / "celery"),
                "-A",
                "worker.app",
                "beat",
                "-s",
                str(self.tmp / "beat-schedule"),
                "-l",
                "info",
            ],
        )
        self.wait_for_log(process, self._log_name("beat"), "beat: Starting")

    def kill_worker_child(self, rng: random.Random) -> int | None:
        """``kill -9`` one pool process of the worker, chosen at random."""
        pool = children(self.named["worker"].pid)
        if not pool:
            return None
        pid = rng.choice(pool)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        return pid

    def _api_key(self) -> str:
        from models.db import make_sessionmaker
        from producer.keys import create_key

        with make_sessionmaker(self.engine)() as session:
            _row, key = create_key(session, "chaos")
        return key

    # --- the provider -------------------------------------------------------

    def configure_simulator(self, changes: dict[str, Any], name: str = SIMULATOR) -> None:
        url = self.sim_urls[name]
        httpx.post(f"{url}/_config", json=changes, timeout=10).raise_for_status()

    def live_stats(self, name: str = SIMULATOR) -> dict[str, Any] | None:
        try:
            return dict(httpx.get(f"{self.sim_urls[name]}/_stats", timeout=5).json())
        except httpx.HTTPError:
            return None

    def sim_stats(self, name: str = SIMULATOR) -> dict[str, Any]:
        """Every process of simulator ``name``'s stats added up (it may have been restarted)."""
        parts = [*self.past_stats[name]]
        live = self.live_stats(name)
        if live is not None:
            parts.append(live)
        per_number: Counter[str] = Counter()
        reported: Counter[str] = Counter()
        result: dict[str, Any] = {"dlr_failed": 0, "dlr_pending": 0, "outages": 0, "hangs": 0}
        for part in parts:
            per_number.update(part["per_number"])
            reported.update(part["dlr"]["per_number"])
            result["dlr_failed"] += part["dlr"]["failed"]
            result["outages"] += part["injected"]["outages"]
            result["hangs"] += part["injected"]["hangs"]
        if live is not None:
            result["dlr_pending"] = live["dlr"]["pending"]
        result["per_number"] = per_number
        result["reported"] = reported
        return result

    # --- the database -------------------------------------------------------

    def statuses(self) -> Counter[str] | None:
        """Messages by status, or None while the database cannot be read."""
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(select(Message.status, func.count()).group_by(Message.status))
                return Counter({status: int(n) for status, n in rows})
        except SQLAlchemyError:
            return None

    def messages(self) -> list[tuple[str, str, str, str | None]]:
        """(to, status, kind, campaign_id) of every message."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Message.to, Message.status, Message.kind, Message.campaign_id)
            )
            return [(r[0], r[1], r[2], r[3]) for r in rows]

    def campaign_statuses(self) -> list[str]:
        with self.engine.connect() as conn:
            return sorted(set(conn.scalars(select(Campaign.status))))

    def close(self) -> None:
        """Stop every process and drop the database; PostgreSQL must be up."""
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        # Children of a killed process group leader may linger in the group.
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        self.processes.clear()
        super().stop()
