"""The periodic queries on a 10-million-row ``messages`` table, before and after
migration 0008's indexes, in one run.

Seeds its own PostgreSQL database (dropped at the end) with ``--rows``
messages of a realistic mix spread over 90 days — 82 % delivered, 5 % failed,
3 % undelivered, 3 % expired, 3 % sent without a report, 2 % cancelled, the
rest unknown (resent once already, left for an operator); 70 % campaign (1,000
campaigns), 20 % transactional, 10 % OTP; two accounts, a fifth on a route —
plus ``--live`` live rows (half queued, 30 % scheduled for tomorrow, 10 %
sending under a live lease, 2 % unknown of the last minute, the rest sent in
the last five minutes). The rows are generated inside PostgreSQL (``INSERT …
SELECT … FROM generate_series``: one statement, faster than any client-side
COPY stream). Message events are not seeded: no periodic query reads them.

Then times each periodic query as the beat and the operators run it,
median of ``--repeats`` calls, on the schema of migration 0007 (the
baseline), then again after ``alembic upgrade`` to 0008 (its indexes built
``CONCURRENTLY``; the build time is shown too), and ``smsq db prune``'s
rate (``--older-than 60d`` for ``--prune-seconds``). The live rows are shaped so
that no call changes anything: every call does its reads and finds nothing
to move, the steady state of a healthy fleet.

    .venv/bin/python bench/big_table.py                     # 10 M rows, ~15 min
    .venv/bin/python bench/big_table.py --rows 1000000 --json big.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.db import make_engine, make_sessionmaker
from models.migrate import upgrade
from models.retention import prune
from smsq.core.settings import Settings
from worker import fleet
from worker.recovery import sending_tokens
from worker.scheduler import promote_due
from worker.sweeper import sweep

CAMPAIGNS = 1_000

SEED_CAMPAIGNS = """
INSERT INTO campaigns (id, name, text, provider, status, accepted, rejected, created_at,
                       started_at, finished_at)
SELECT 'c' || lpad(g::text, 8, '0'), 'campaign ' || g, 'Spring sale {name}', 'panel',
       CASE WHEN g > :old THEN 'running' ELSE 'finished' END, 10000, 0, t, t,
       CASE WHEN g > :old THEN NULL ELSE t + interval '1 hour' END
FROM generate_series(1, :campaigns) AS g,
     LATERAL (SELECT (now() AT TIME ZONE 'utc') - interval '90 days' * (1 - g::float / :campaigns)
              AS t) AS c
"""

# g = 1 is the oldest row; created_at grows with g over 90 days.
SEED_HISTORY = """
INSERT INTO messages (id, "to", text, kind, campaign_id, provider, route, status, encoding,
                      segments, attempts, provider_message_id, error_code, stop_list, flash,
                      client_id, was_scheduled, parts_sent, unknown_resends, created_at,
                      updated_at, sent_at, finished_at)
SELECT 'm' || lpad(g::text, 10, '0'),
       '+49151' || lpad(g::text, 9, '0'),
       'Spring sale: 20% off today',
       k.kind,
       CASE WHEN k.kind = 'campaign'
            THEN 'c' || lpad((1 + (g::bigint - 1) * :campaigns / :rows)::text, 8, '0') END,
       CASE WHEN g % 3 = 0 THEN 'brand' ELSE 'panel' END,
       CASE WHEN g % 5 = 0 THEN 'bulk' END,
       s.status, 'gsm7', 1, 1, 'p' || g,
       CASE WHEN s.status = 'failed' THEN 11 END,
       true, false, '', false, 0,
       CASE WHEN s.status = 'unknown' THEN 1 ELSE 0 END,
       t.at, t.at + interval '10 seconds',
       CASE WHEN s.status NOT IN ('expired', 'cancelled') THEN t.at + interval '2 seconds' END,
       CASE WHEN s.status NOT IN ('sent', 'unknown') THEN t.at + interval '10 seconds' END
FROM generate_series(1, :rows) AS g,
     LATERAL (SELECT (now() AT TIME ZONE 'utc') - interval '1 hour'
                     - interval '90 days' * (1 - g::float / :rows) AS at) AS t,
     LATERAL (SELECT CASE WHEN g % 10 < 7 THEN 'campaign'
                          WHEN g % 10 < 9 THEN 'transactional' ELSE 'otp' END AS kind) AS k,
     LATERAL (SELECT CASE WHEN g % 100 < 82 THEN 'delivered'
                          WHEN g % 100 < 87 THEN 'failed'
                          WHEN g % 100 < 90 THEN 'undelivered'
                          WHEN g % 100 < 93 THEN 'expired'
                          WHEN g % 100 < 96 THEN 'sent'
                          WHEN g % 100 < 98 THEN 'cancelled'
                          ELSE 'unknown' END AS status) AS s
"""

# Live rows: on running campaigns (the last ones) and alone; nothing due to move.
SEED_LIVE = """
INSERT INTO messages (id, "to", text, kind, campaign_id, provider, route, status, encoding,
                      segments, attempts, stop_list, flash, client_id, was_scheduled,
                      parts_sent, unknown_resends, created_at, updated_at, send_at,
                      lease_until, lease_token, sent_at, finished_at)
SELECT 'l' || lpad(g::text, 10, '0'),
       '+49160' || lpad(g::text, 9, '0'),
       'Your code is 123456',
       CASE WHEN g % 2 = 0 THEN 'campaign' ELSE 'transactional' END,
       CASE WHEN g % 2 = 0 THEN 'c' || lpad((:campaigns - g % 5)::text, 8, '0') END,
       CASE WHEN g % 3 = 0 THEN 'brand' ELSE 'panel' END,
       CASE WHEN g % 5 = 0 THEN 'bulk' END,
       s.status, 'gsm7', 1, CASE WHEN s.status = 'queued' THEN 0 ELSE 1 END,
       true, false, '', s.status = 'scheduled', 0, 0,
       n.now - interval '30 seconds', n.now,
       CASE WHEN s.status = 'scheduled' THEN n.now + interval '1 day'
            WHEN s.status = 'queued' THEN n.now + interval '1 hour' END,
       CASE WHEN s.status = 'sending' THEN n.now + interval '1 hour' END,
       CASE WHEN s.status = 'sending' THEN 'live-claim' END,
       CASE WHEN s.status = 'sent' THEN n.now - interval '1 second' * (g % 300) END,
       NULL
FROM generate_series(1, :live) AS g,
     LATERAL (SELECT now() AT TIME ZONE 'utc' AS now) AS n,
     LATERAL (SELECT CASE WHEN g % 100 < 50 THEN 'queued'
                          WHEN g % 100 < 80 THEN 'scheduled'
                          WHEN g % 100 < 90 THEN 'sending'
                          WHEN g % 100 < 92 THEN 'unknown'
                          ELSE 'sent' END AS status) AS s
"""


def seed(engine: Engine, rows: int, live: int) -> dict[str, float]:
    took: dict[str, float] = {}
    with engine.begin() as conn:
        t0 = time.perf_counter()
        conn.execute(text(SEED_CAMPAIGNS), {"campaigns": CAMPAIGNS, "old": CAMPAIGNS - 5})
        conn.execute(text(SEED_HISTORY), {"rows": rows, "campaigns": CAMPAIGNS})
        took["history_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        conn.execute(text(SEED_LIVE), {"live": live, "campaigns": CAMPAIGNS})
        took["live_seconds"] = time.perf_counter() - t0
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        t0 = time.perf_counter()
        conn.execute(text("VACUUM ANALYZE messages"))
        conn.execute(text("VACUUM ANALYZE campaigns"))
        took["vacuum_analyze_seconds"] = time.perf_counter() - t0
    return took


def periodic_queries(settings: Settings) -> dict[str, Callable[[Session], Any]]:
    """Each periodic query as its caller runs it; none finds anything to move."""

    def now() -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    return {
        "promoter (promote_due)": lambda s: promote_due(s, now=now(), horizon=120),
        "sweeper / reconcile (sweep)": lambda s: sweep(
            s,
            now=now(),
            requeue_after=settings.requeue_after,
            unknown_resend_after=settings.unknown_resend_after,
            broker_lost=False,
            queue_is_empty=lambda queue: False,
            resend_providers=["panel", "brand"],
            live_claims=lambda tokens: set(tokens),
            live_patience=settings.outcome_write_patience,
            dead_worker_resend_after=settings.dead_worker_resend_after,
            ingest_stall_after=settings.ingest_stall_after,
        ),
        "dead-worker recovery (sending_tokens)": sending_tokens,
        # The database's part: no throttle store, broker or workers to ask.
        "smsq fleet status (fleet_status)": lambda s: fleet.fleet_status(
            s, settings=settings, store=None, broker=None, workers=None, now=now()
        ),
    }


def time_queries(
    engine: Engine,
    sessions: sessionmaker[Session],
    queries: dict[str, Callable[[Session], Any]],
    repeats: int,
) -> dict[str, dict[str, Any]]:
    """Median wall time of each call, and its slowest SQL statements (last call)."""
    statements: list[tuple[float, str]] = []

    def before(conn: Any, *_: Any) -> None:
        conn.info["bench_t0"] = time.perf_counter()

    def after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        took = 1000 * (time.perf_counter() - conn.info["bench_t0"])
        statements.append((took, " ".join(statement.split())[:160]))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    result: dict[str, dict[str, Any]] = {}
    try:
        for name, query in queries.items():
            times = []
            for _ in range(repeats):
                statements.clear()
                with sessions() as session:
                    t0 = time.perf_counter()
                    query(session)
                    times.append(1000 * (time.perf_counter() - t0))
                    session.rollback()
            slowest = sorted(statements, reverse=True)[:3]
            result[name] = {
                "median_ms": statistics.median(times),
                "max_ms": max(times),
                "statements": len(statements),
                "slowest": [{"ms": ms, "sql": sql} for ms, sql in slowest],
            }
            print(
                f"    {name:42} {result[name]['median_ms']:9.1f} ms  "
                f"({len(statements)} statements; slowest {slowest[0][0]:.1f} ms: "
                f"{slowest[0][1][:70]})",
                flush=True,
            )
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
    return result


def measure_prune(sessions: sessionmaker[Session], seconds: float) -> dict[str, float]:
    """``smsq db prune --older-than 60d``: the dry run's count, then deleting for
    ``seconds`` (a third of the seeded history is older than 60 days)."""
    options: dict[str, Any] = {
        "older_than": dt.timedelta(days=60),
        "idempotency_ttl": 86_400,
        "now": dt.datetime.now(dt.UTC),
    }
    t0 = time.perf_counter()
    counted = prune(sessions, dry_run=True, **options)
    count_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    done = prune(sessions, budget=seconds, **options)
    took = time.perf_counter() - t0
    result = {
        "dry_run_seconds": count_seconds,
        "prunable_messages": counted.messages,
        "deleted_messages": done.messages,
        "seconds": took,
        "messages_per_second": done.messages / took,
        "complete": done.complete,
    }
    print(
        f"  prune --older-than 60d: dry run {count_seconds:.1f} s for "
        f"{counted.messages:,} messages; deleted {done.messages:,} in {took:.1f} s "
        f"({result['messages_per_second']:,.0f}/s, batches of 5,000)",
        flush=True,
    )
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="history rows")
    ap.add_argument("--live", type=int, default=100_000, help="live rows")
    ap.add_argument("--repeats", type=int, default=5, help="calls per query; median shown")
    ap.add_argument("--prune-seconds", type=float, default=30.0, help="time budget of the prune")
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()

    admin = make_engine(args.postgres, isolation_level="AUTOCOMMIT")
    name = f"smsq_big_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = args.postgres.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)
    try:
        upgrade(url, "0007")
        print(f"seeding {args.rows:,} history rows and {args.live:,} live rows ...", flush=True)
        seeded = seed(engine, args.rows, args.live)
        print(f"  seeded in {seeded}", flush=True)
        settings = Settings(database_url=url)
        sessions = make_sessionmaker(engine)
        queries = periodic_queries(settings)
        print("  baseline (schema 0007):", flush=True)
        before = time_queries(engine, sessions, queries, args.repeats)
        t0 = time.perf_counter()
        upgrade(url)
        build = time.perf_counter() - t0
        print(f"  migration 0008 (3 indexes, CREATE INDEX CONCURRENTLY): {build:.1f} s", flush=True)
        print("  with migration 0008:", flush=True)
        after = time_queries(engine, sessions, queries, args.repeats)
        with engine.connect() as conn:
            size = conn.execute(
                text("SELECT pg_size_pretty(pg_total_relation_size('messages'))")
            ).scalar_one()
        pruning = measure_prune(sessions, args.prune_seconds)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    print(f"\n{args.rows:,} + {args.live:,} rows, messages {size}; median of {args.repeats} calls")
    print(f"{'query':42} {'0007 ms':>10} {'0008 ms':>10} {'ratio':>7}")
    for query in queries:
        b, a = before[query]["median_ms"], after[query]["median_ms"]
        print(f"{query:42} {b:10.1f} {a:10.1f} {b / a:6.0f}x")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rows": args.rows,
                    "live": args.live,
                    "table_size": size,
                    "seeded": seeded,
                    "index_build_seconds": build,
                    "before": before,
                    "after": after,
                    "prune": pruning,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
