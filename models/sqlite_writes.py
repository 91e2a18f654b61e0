"""SQLite writers of one process take turns on a lock instead of SQLite's busy sleeps.

SQLite lets one writer at a time hold a database file. A writer that finds it
taken waits in SQLite's busy handler, which *sleeps* in growing steps (1, 2,
5, 10, ... up to 100 ms) and looks again, so under steady writing (the
embedded demo: a campaign's outcomes, delivery reports, an API, all in one
process) a short write can sleep hundreds of milliseconds while the lock
was free most of that time. That was most of an OTP's latency in ``smsq
demo`` (py-spy, wall clock: 45 % of its send in writing its outcome).

So the connections this module makes take a process-wide lock, per
database file, when their statement is about to start a write transaction
and give it back when the transaction ends (commit, rollback, close): a
waiting writer wakes the moment the lock is free. Reads take no lock (WAL:
readers never wait for the writer). SQLite's own locking stays the
authority: a lock not had within :data:`WAIT` seconds is skipped and the
write goes on to SQLite's busy handler as before (e.g. another process
writing the same file, which this lock does not see).

PostgreSQL engines do not use this.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Self

WAIT = 30.0  # seconds, as the busy timeout (models.db)

# Statements that start a write transaction in sqlite3's legacy transaction
# control (it opens one before DML), and DDL.
_WRITES = ("insert", "update", "delete", "replace", "create", "drop", "alter", "begin")

_local = threading.local()


@contextlib.contextmanager
def writes_first() -> Iterator[None]:
    """This thread's SQLite writes take their turn before those of threads
    outside such a block (the OTP lane's, in the one-process demo: an OTP
    must not queue behind a campaign's batch writes). No effect on
    PostgreSQL, which has no such lock."""
    before = getattr(_local, "first", False)
    _local.first = True
    try:
        yield
    finally:
        _local.first = before


class Turns:
    """One database file's turn to write: free or held; waiting writers in
    :func:`writes_first` go before the others."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._held = False
        self._first_waiting = 0

    def acquire(self, timeout: float) -> bool:
        first = bool(getattr(_local, "first", False))
        with self._changed:
            if first:
                self._first_waiting += 1
            try:
                got = self._changed.wait_for(
                    lambda: not self._held and (first or self._first_waiting == 0), timeout
                )
            finally:
                if first:
                    self._first_waiting -= 1
                    self._changed.notify_all()  # the others may go now
            if got:
                self._held = True
            return got

    def release(self) -> None:
        with self._changed:
            self._held = False
            self._changed.notify_all()

    def locked(self) -> bool:
        return self._held


_turns: dict[str, Turns] = {}
_turns_guard = threading.Lock()


def _lock_for(database: str) -> Turns:
    key = database if database in ("", ":memory:") else os.path.realpath(database)
    if key in ("", ":memory:"):
        return Turns()  # a private database: its own turns
    with _turns_guard:
        return _turns.setdefault(key, Turns())


class TakingTurnsConnection(sqlite3.Connection):
    """``sqlite3.connect(..., factory=TakingTurnsConnection)``."""

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self._write_lock = _lock_for(os.fsdecode(database))
        self._holding = False

    def cursor(self, factory: Any = None) -> Any:
        return super().cursor(factory or TakingTurnsCursor)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        cursor: sqlite3.Cursor = self.cursor()
        return cursor.execute(sql, parameters)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._end()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._end()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release()

    def _before(self, sql: str) -> None:
        if self._holding or self.in_transaction:
            return
        if sql.lstrip().lower().startswith(_WRITES):
            self._holding = self._write_lock.acquire(timeout=WAIT)

    def _end(self) -> None:
        """After a statement or a transaction: give the turn back unless a
        write transaction is still open."""
        if self._holding and not self.in_transaction:
            self._release()

    def _release(self) -> None:
        if self._holding:
            self._holding = False
            self._write_lock.release()


class TakingTurnsCursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> Self:
        with self._turn(sql):
            return super().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> Self:
        with self._turn(sql):
            return super().executemany(sql, seq_of_parameters)

    @contextlib.contextmanager
    def _turn(self, sql: str) -> Iterator[None]:
        """Take the turn if ``sql`` starts a write; give it back after an
        autocommitted statement or a failed BEGIN."""
        connection = self.connection
        assert isinstance(connection, TakingTurnsConnection)
        connection._before(sql)
        try:
            yield
        finally:
            connection._end()
