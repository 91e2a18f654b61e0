"""PostgreSQL and Redis that a chaos run may stop, kill and restart.

The machine's shared services must never be disturbed, so by default the
suite runs its own: a scratch PostgreSQL cluster (``initdb`` in a temp dir,
its own port, trust auth, removed at the end) and its own ``redis-server``
(no persistence, its own port). ``--postgres-cluster 15/main`` targets a
Debian cluster through ``pg_ctlcluster`` instead, for a machine that is the
suite's alone.

Every class here has ``stop()``/``start()`` for the fault and ``close()`` for
the cleanup, which is safe to call twice and after a failed start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Protocol

import redis

from bench._stack import free_port

PG_BINDIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


class Postgres(Protocol):
    url: str  # an admin URL: the suite creates its database from here

    def stop(self) -> None: ...
    def start(self) -> None: ...
    def ensure_started(self) -> None: ...  # after an interrupted outage
    def close(self) -> None: ...


def _pg_bin(name: str) -> str:
    for bindir in PG_BINDIRS:
        if (bindir / name).exists():
            return str(bindir / name)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"chaos: {name} not found (install PostgreSQL's server binaries)")
    return found


def _as_postgres(argv: list[str]) -> list[str]:
    """initdb and pg_ctl refuse to run as root: run them as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _wait_ready(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = subprocess.run(
            [_pg_bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)], check=False
        )
        if ready.returncode == 0:
            return
        time.sleep(0.1)
    raise SystemExit(f"chaos: PostgreSQL on port {port} did not come up")


class ScratchPostgres:
    """A throwaway cluster in ``<tmp>/pg``: created, started, and removed by ``close``."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp / "pgdata"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._log = tmp / "postgres.log"
        tmp.mkdir(parents=True, exist_ok=True)
        self.dir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(tmp, "postgres")
            shutil.chown(self.dir, "postgres")
        subprocess.run(
            _as_postgres(
                [_pg_bin("initdb"), "-D", str(self.dir), "-U", "postgres", "-A", "trust", "-N"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        with (self.dir / "postgresql.conf").open("a") as conf:
            # Durability is not what is tested (a fast stop checkpoints anyway).
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\nfsync = off\nmax_connections = 200\n"
            )
        self.started = False
        self.start()

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(self.dir), "-l", str(self._log), *args]),
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast", "-w")
        self.started = False

    def start(self) -> None:
        self._ctl("start", "-w")
        self.started = True
        _wait_ready(self.port)

    def ensure_started(self) -> None:
        if not self.started:
            self.start()

    def close(self) -> None:
        if self.started:
            with contextlib.suppress(subprocess.CalledProcessError):
                self._ctl("stop", "-m", "immediate", "-w")
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)


class ClusterPostgres:
    """A Debian cluster (``15/main``) stopped and started with ``pg_ctlcluster``.

    Only for a machine whose PostgreSQL is the suite's alone: every other
    user of that cluster sees the outage too.
    """

    def __init__(self, cluster: str, url: str) -> None:
        self.version, self.name = cluster.split("/", 1)
        self.url = url
        self.port = int(url.split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])

    def _ctl(self, action: str, *args: str) -> None:
        subprocess.run(
            [
                "pg_ctlcluster",
                "--skip-systemctl-redirect",
                self.version,
                self.name,
                action,
                *args,
            ],
            check=True,
        )

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")

    def start(self) -> None:
        self._ctl("start")
        _wait_ready(self.port)

    def ensure_started(self) -> None:
        ready = subprocess.run(
            [_pg_bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)], check=False
        )
        if ready.returncode != 0:
            self.start()

    def close(self) -> None:
        self.ensure_started()  # never leave the machine's cluster down


class OwnRedis:
    """A ``redis-server`` of the suite's own, without persistence.

    ``restart`` is ``kill -9`` and a start on the same port: everything in it
    (the broker's queues, unacked tasks, throttle buckets, breakers) is gone.
    """

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._log = tmp / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=self._log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError as exc:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit(f"chaos: redis-server did not start, see {self._log}") from exc
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def flush(self) -> None:
        client = redis.Redis(port=self.port)
        client.flushall()  # our own server: nobody else's data
        client.close()

    def close(self) -> None:
        self.kill()
