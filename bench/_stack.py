"""What the end-to-end benchmarks share: a scratch database and child processes.

``Stack`` creates its own PostgreSQL database (dropped at ``stop``), migrates
it, and spawns servers and workers as separate processes in their own session
(so the driver never shares their GIL and ``stop`` kills whole trees). Their
output goes to ``<tmp>/<name>.log``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.db import make_engine  # noqa: E402
from models.migrate import upgrade  # noqa: E402

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    def __init__(self, postgres: str, tmp: Path, env: dict[str, str] | None = None) -> None:
        self.postgres = postgres
        self.tmp = tmp
        self.processes: list[subprocess.Popen[bytes]] = []
        admin = make_engine(postgres, isolation_level="AUTOCOMMIT")
        self.db_name = f"smsq_bench_{os.getpid()}"
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.db_name}"'))
            conn.execute(text(f'CREATE DATABASE "{self.db_name}"'))
        admin.dispose()
        self.db_url = postgres.rsplit("/", 1)[0] + f"/{self.db_name}"
        upgrade(self.db_url)
        self.engine = make_engine(self.db_url)
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SMSQ_DATABASE_URL": self.db_url,
            "SMSQ_LOG_LEVEL": "WARNING",
            **(env or {}),
        }

    def spawn(
        self, argv: list[str], name: str, stdout: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """``argv`` in its own session; output to ``<tmp>/<name>.log``, or its
        stdout alone to ``stdout`` (a command that prints one JSON document)."""
        log = (self.tmp / f"{name}.log").open("wb")
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self.env,
            stdout=log if stdout is None else stdout.open("wb"),
            stderr=subprocess.STDOUT if stdout is None else log,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def start_simulator(self, port: int, latency_ms: float, name: str = "simulator") -> str:
        """``smsq simulator`` on ``port`` as a process; returns its base URL once it answers."""
        self.spawn(
            [str(BIN / "smsq"), "simulator", "--port", str(port), "--latency-ms", str(latency_ms)],
            name,
        )
        url = f"http://127.0.0.1:{port}"
        self.wait_http(f"{url}/_stats")
        return url

    def start_celery_worker(
        self, app: str, queues: str, concurrency: int, name: str, extra: Sequence[str] = ()
    ) -> subprocess.Popen[bytes]:
        """A prefork Celery worker of ``app`` on ``queues``, once it says it is ready;
        ``extra``: more options (e.g. ``--prefetch-multiplier 1``)."""
        process = self.spawn(
            [
                str(BIN / "celery"),
                "-A",
                app,
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
                *extra,
            ],
            name,
        )
        self.wait_for_log(process, name, " ready.")
        return process

    def wait_for_log(self, process: subprocess.Popen[bytes], name: str, line: str) -> None:
        log = self.tmp / f"{name}.log"
        deadline = time.monotonic() + 60
        while line not in log.read_text(errors="replace"):
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"{name} did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)

    def wait_http(self, url: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise SystemExit(f"{url} did not answer")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, 15)
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
        self.engine.dispose()
        admin = make_engine(self.postgres, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
        admin.dispose()


def _group_stats(group: int) -> dict[int, list[str]]:
    """``/proc/<pid>/stat`` fields after the command name, of every process in
    the process group ``group`` (Linux), by pid."""
    found: dict[int, list[str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[2]) == group:  # pgrp
            found[int(stat.parent.name)] = fields
    return found


def group_cpu_seconds(group: int) -> float:
    """User + system CPU of every process in the process group ``group`` (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    # utime and stime are fields 14 and 15 of the whole line
    total = sum(int(f[11]) + int(f[12]) for f in _group_stats(group).values())
    return total / ticks


def group_pids(group: int) -> list[int]:
    """The processes in the process group ``group`` now (Linux)."""
    return sorted(_group_stats(group))


def memory_kb(pid: int) -> tuple[int, int] | None:
    """(resident now, peak resident) of ``pid`` in kB: ``VmRSS`` and ``VmHWM``
    of ``/proc/<pid>/status``; None once the process is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    values = {}
    for line in lines:
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    if len(values) < 2:
        return None  # a zombie has no memory lines
    return values["VmRSS"], values["VmHWM"]


def scratch_dir(name: str) -> Path:
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"smsq-{name}-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp
