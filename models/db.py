"""Engines and sessions.

Engines are made per process (a Celery prefork child makes its own after the
fork), never shared across a fork. SQLite gets WAL, a busy timeout and
writers that take turns on a lock (:mod:`models.sqlite_writes`) so the
embedded default copes with workers and an API writing at once.

A PostgreSQL engine never waits long for a database that is away: a new
connection gives up after :data:`CONNECT_TIMEOUT` seconds (a URL's own
``?connect_timeout=`` wins), a caller waiting for a pooled connection after
:data:`POOL_TIMEOUT`, and a pooled connection is checked before use (a
restarted server's dead connections are replaced, not handed out). The
errors that mean "the database is unreachable or dropped us" are
:data:`UNAVAILABLE_ERRORS`; callers answer them with "retry later", never a
hang nor a 500.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from models.sqlite_writes import TakingTurnsConnection

CONNECT_TIMEOUT = 5  # seconds to open a PostgreSQL connection
POOL_TIMEOUT = 10.0  # seconds to wait for a pooled connection

# Connection refused or dropped, server shutting down or starting up, pool
# exhausted, a deadlock or serialization failure: all pass, so "retry later".
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
)


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is away for now (not a bug, not bad data)."""
    return isinstance(exc, UNAVAILABLE_ERRORS)


def normalize_url(url: str) -> str:
    """Pick the psycopg 3 driver for plain ``postgresql://`` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        kwargs.setdefault(
            "connect_args",
            # Writers take turns on a lock instead of sleeping in SQLite's busy
            # handler (models.sqlite_writes).
            {"timeout": 30, "check_same_thread": False, "factory": TakingTurnsConnection},
        )
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_timeout", POOL_TIMEOUT)
    if "connect_timeout" not in make_url(url).query:
        connect_args = kwargs.setdefault("connect_args", {})
        connect_args.setdefault("connect_timeout", CONNECT_TIMEOUT)
    return create_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
