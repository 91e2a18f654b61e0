"""SQLite writers of one process take turns on a lock (models/sqlite_writes.py)."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from models.sqlite_writes import TakingTurnsConnection, writes_first


def connect(path: Path) -> TakingTurnsConnection:
    conn = sqlite3.connect(path, timeout=30, check_same_thread=False, factory=TakingTurnsConnection)
    assert isinstance(conn, TakingTurnsConnection)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


def test_a_second_writer_goes_the_moment_the_first_commits_and_readers_never_wait(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db.sqlite"
    first, second, reader = connect(path), connect(path), connect(path)
    first.execute("CREATE TABLE t (x INTEGER)")
    first.execute("INSERT INTO t VALUES (1)")  # a write transaction: the turn is taken
    assert first.in_transaction and first._write_lock.locked()
    assert second._write_lock is first._write_lock  # one lock per database file

    done: list[float] = []

    def write() -> None:
        second.execute("INSERT INTO t VALUES (2)")
        done.append(time.monotonic())
        second.commit()

    writer = threading.Thread(target=write)
    writer.start()
    started = time.monotonic()
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (0,)  # WAL: no wait
    assert time.monotonic() - started < 0.5
    time.sleep(1.0)  # SQLite's own busy handler would be sleeping 100 ms at a time by now
    assert not done
    committed = time.monotonic()
    first.commit()
    writer.join(5)
    assert done and done[0] - committed < 0.5
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (2,)
    assert not first._write_lock.locked()


def test_rollback_close_and_a_failed_statement_give_the_turn_back(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    conn = connect(path)
    conn.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)")
    assert not conn._write_lock.locked()  # DDL outside a transaction: given back at once
    conn.execute("INSERT INTO t VALUES (1)")
    conn.rollback()
    assert not conn._write_lock.locked()
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO t VALUES (1)")  # a duplicate key: the transaction stays open
    assert conn._write_lock.locked()
    other = connect(path)
    conn.close()  # closing rolls back and gives the turn back
    other.execute("INSERT INTO t VALUES (2)")
    other.commit()
    assert other.execute("SELECT count(*) FROM t").fetchone() == (2,)


def test_a_writer_in_writes_first_goes_before_writers_already_waiting(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    holder, campaign, otp = connect(path), connect(path), connect(path)
    holder.execute("CREATE TABLE t (x TEXT)")
    holder.execute("INSERT INTO t VALUES ('holder')")  # holds the turn
    order: list[str] = []

    def write(conn: TakingTurnsConnection, name: str, first: bool) -> None:
        with writes_first() if first else contextlib.nullcontext():
            conn.execute("INSERT INTO t VALUES (?)", (name,))
            order.append(name)
            conn.commit()

    waiting = threading.Thread(target=write, args=(campaign, "campaign", False))
    waiting.start()
    time.sleep(0.2)  # the campaign's write waits first ...
    urgent = threading.Thread(target=write, args=(otp, "otp", True))
    urgent.start()
    time.sleep(0.2)
    holder.commit()  # ... but the OTP's goes first
    for thread in (waiting, urgent):
        thread.join(5)
    assert order == ["otp", "campaign"]
