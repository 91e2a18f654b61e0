"""The chaos suite: each fault against the real stack, one table, pass or fail.

Every scenario starts a fresh stack (scratch database, empty Redis, provider
simulator, ``smsq api``, a Celery worker and beat as processes), submits a
campaign through ``POST /v1/campaigns`` (``--size`` recipients, panelsms at
``--rate``/s answering in 20 ms, delivery reports on) while OTPs trickle in
through ``POST /v1/messages``, injects its fault, and waits until nothing is
pending or its deadline passes. It then counts at the provider (by
destination number) and in the database. The baseline (no fault) runs first:
the other runs' times are compared with it.

    .venv/bin/python bench/chaos.py                      # everything, full size (~25 min)
    .venv/bin/python bench/chaos.py --quick              # shortened, what CI runs (~8 min)
    .venv/bin/python bench/chaos.py --scenario postgres  # baseline + one scenario

PostgreSQL and Redis are the suite's own (a scratch cluster made with
``initdb`` and a ``redis-server`` on free ports, removed at the end), so the
machine's shared services are never stopped. ``--postgres-cluster 15/main
--postgres URL`` stops a Debian cluster with ``pg_ctlcluster`` instead.
The exit code is 1 if any scenario missed its threshold.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._chaos_probes import Probes
from bench._chaos_scenarios import (
    BY_NAME,
    FAILED_FINAL,
    REPORTED,
    SCENARIOS,
    Row,
    Run,
    Scenario,
)
from bench._chaos_stack import PENDING, ChaosStack
from bench._services import ClusterPostgres, OwnRedis, Postgres, ScratchPostgres
from bench._stack import scratch_dir

REPORT_GRACE = 15.0  # seconds for reports in flight to be applied once all is sent
QUICK = {
    "size": 2000,
    "kills": 10,
    "pg_outage": 10.0,
    "outage": 30.0,
    "error_for": 20.0,
    "provider_timeout": 3.0,
    "upload_rows": 20_000,
    "upload_wait": 40.0,
    # The upload's heartbeat stops with the API: the sweeper (every 15 s)
    # cancels the campaign this long after; 15 + 15 s fit the 40 s above.
    "ingest_stall_after": 15,
}


def campaign_number(i: int) -> str:
    return f"+4915123{i:06d}"


def submit_campaign(stack: ChaosStack, size: int) -> None:
    response = httpx.post(
        f"{stack.api_url}/v1/campaigns",
        json={
            "name": "chaos",
            "text": "Spring sale today",
            "recipients": [campaign_number(i) for i in range(size)],
        },
        headers={"Authorization": f"Bearer {stack.key}"},
        timeout=60,
    )
    if response.status_code != 202 or response.json()["accepted"] != size:
        raise SystemExit(f"chaos: campaign not accepted: {response.status_code} {response.text}")


def settle(run: Run, deadline: float, pending: tuple[str, ...]) -> float | None:
    """Seconds from the start until nothing is ``pending``, or None at the deadline;
    then a grace period for the delivery reports still in flight."""
    done = None
    while time.time() < deadline:
        counts = run.stack.statuses()
        if counts is not None and sum(counts[s] for s in pending) == 0:
            done = time.time() - run.t0
            break
        time.sleep(0.25)
    grace = time.time() + REPORT_GRACE
    while done is not None and time.time() < grace:
        stats = run.stack.sim_stats()
        if stats["dlr_pending"] == 0 and count(run).reports_lost == 0:
            break
        time.sleep(0.5)
    return done


def count(run: Run) -> Row:
    """What the provider and the database say, one row of the table."""
    stats = run.stack.sim_stats()
    sends: Counter[str] = stats["per_number"]
    reported: Counter[str] = stats["reported"]
    row = Row(run.args.scenario_name, reports_refused=stats["dlr_failed"])
    for to, status, _kind, _campaign in run.stack.messages():
        digits = to[1:]
        row.messages += 1
        row.reached += sends[digits] > 0
        row.duplicates += sends[digits] > 1
        if not sends[digits] and status not in FAILED_FINAL:
            if status in PENDING:
                row.late += 1
            else:
                row.lost += 1
        row.unknown += status == "unknown"
        row.failed += status == "failed"
        row.expired += status == "expired"
        row.reports_lost += reported[digits] > 0 and status not in REPORTED
    return row


def run_scenario(
    scenario: Scenario,
    args: argparse.Namespace,
    tmp: Path,
    postgres: Postgres,
    redis: OwnRedis,
    base: float,
) -> Row:
    args.scenario_name = scenario.name
    print(f"chaos: {scenario.name}: {scenario.title}", file=sys.stderr, flush=True)
    stack = ChaosStack(args, tmp / scenario.name, postgres, redis)
    probes = Probes(stack, args.otp_rate)
    run = Run(args, stack, probes, postgres, redis)
    try:
        probes.start()
        run.t0 = time.time()
        if scenario.campaign:
            submit_campaign(stack, args.size)
        scenario.fault(run)
        probes.stop_otp()
        deadline = scenario.deadline(run, base)
        pending = PENDING if scenario.unknown_pending else tuple(set(PENDING) - {"unknown"})
        seconds = settle(run, deadline, pending)
        probes.stop()
        row = count(run)
        row.seconds, row.deadline = seconds, deadline - run.t0
        row.otp_worst = probes.seen.worst_otp_latency()
        row.problems = [p for check in scenario.checks for p in check(run, row, base)]
        worst, unanswered = probes.seen.worst_health(run.t0, time.time())
        row.health_worst = worst
        health = f"/healthz over the run: slowest {worst:.2f} s, {unanswered} unanswered"
        row.notes = [
            *run.notes,
            *(f"{k}: {v:.2f}" for k, v in run.figures.items() if v),
            health,
        ]
        return row
    finally:
        probes.stop()
        postgres.ensure_started()  # the stack's database is dropped there
        stack.close()


def table(rows: list[Row], base: float) -> str:
    head = (
        f"{'scenario':16} {'msgs':>6} {'reached':>7} {'dup':>4} {'lost':>5} {'late':>5} "
        f"{'unknown':>7} {'failed':>6} {'expired':>7} {'rep.lost':>8} {'rep.refused':>11} "
        f"{'time':>8} {'vs base':>7} {'OTP worst':>9}  result"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        time_s = f"{r.seconds:.1f} s" if r.seconds is not None else f">{r.deadline:.0f} s"
        ratio = f"{r.seconds / base:.1f}x" if r.seconds is not None and base else "-"
        otp = f"{r.otp_worst:.1f} s" if r.otp_worst is not None else "-"
        lines.append(
            f"{r.scenario:16} {r.messages:>6} {r.reached:>7} {r.duplicates:>4} {r.lost:>5} "
            f"{r.late:>5} {r.unknown:>7} {r.failed:>6} {r.expired:>7} {r.reports_lost:>8} "
            f"{r.reports_refused:>11} {time_s:>8} {ratio:>7} {otp:>9}  "
            f"{'pass' if r.passed else 'FAIL'}"
        )
    for r in rows:
        for problem in r.problems:
            lines.append(f"  {r.scenario}: FAIL {problem}")
        for note in r.notes:
            lines.append(f"  {r.scenario}: {note}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", action="append", choices=list(BY_NAME), help="repeatable")
    ap.add_argument("--quick", action="store_true", help="the shortened runs CI uses")
    ap.add_argument("--size", type=int, help="campaign recipients (6000; quick 2000)")
    ap.add_argument("--rate", type=float, default=300.0, help="account rate, messages/s")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="provider answer time")
    ap.add_argument("--workers", type=int, default=2, help="worker pool processes")
    ap.add_argument("--otp-rate", type=float, default=2.0, help="OTPs per second during a run")
    ap.add_argument("--kills", type=int, help="worker children killed, one a second (20)")
    ap.add_argument("--pg-outage", type=float, help="seconds PostgreSQL is down (10)")
    ap.add_argument("--outage", type=float, help="seconds the provider is stopped (600)")
    ap.add_argument("--error-for", type=float, help="seconds of 503s or hanging answers (60)")
    ap.add_argument("--provider-timeout", type=float, help="the account's timeout (10)")
    ap.add_argument("--upload-rows", type=int, help="rows of the killed upload (60000)")
    ap.add_argument("--upload-wait", type=float, help="seconds to settle after that kill (90)")
    ap.add_argument(
        "--ingest-stall-after",
        type=int,
        help="SMSQ_INGEST_STALL_AFTER of the stack (its default, 60; quick 15)",
    )
    ap.add_argument("--seed", type=int, default=10, help="which children are killed")
    ap.add_argument(
        "--postgres-cluster",
        default="scratch",
        help="'scratch' (default: an initdb cluster of its own) or VERSION/NAME for "
        "pg_ctlcluster, which then must be the suite's alone",
    )
    ap.add_argument("--postgres", help="admin URL of --postgres-cluster VERSION/NAME")
    ap.add_argument(
        "--expect-fail",
        action="append",
        default=[],
        choices=list(BY_NAME),
        help="a scenario whose failure does not fail the run (a guarantee still being built)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the logs' temp dir")
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args(argv)
    args.base_health = 0.0  # the baseline run's slowest /healthz, once it ran
    full = {
        "size": 6000,
        "kills": 20,
        "pg_outage": 10.0,
        "outage": 600.0,
        "error_for": 60.0,
        "provider_timeout": 10.0,
        "upload_rows": 60_000,
        "upload_wait": 90.0,  # covers SMSQ_INGEST_STALL_AFTER (60) + a sweep (15)
        "ingest_stall_after": None,  # the setting's default
    }
    for name, value in (QUICK if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.postgres_cluster != "scratch" and not args.postgres:
        ap.error("--postgres-cluster VERSION/NAME needs --postgres URL")
    return args


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)
    tmp = scratch_dir("chaos")
    postgres: Postgres | None = None
    redis: OwnRedis | None = None
    rows: list[Row] = []
    names = args.scenario or [s.name for s in SCENARIOS]
    wanted = [BY_NAME["baseline"], *(BY_NAME[n] for n in names if n != "baseline")]
    try:
        postgres = (
            ScratchPostgres(tmp / "pg")
            if args.postgres_cluster == "scratch"
            else ClusterPostgres(args.postgres_cluster, args.postgres)
        )
        redis = OwnRedis(tmp)
        base = 0.0
        for scenario in wanted:
            started = time.time()
            try:
                row = run_scenario(scenario, args, tmp, postgres, redis, base)
            except Exception as exc:  # the next scenario gets a fresh stack
                traceback.print_exc()
                row = Row(scenario.name, problems=[f"the harness failed: {exc!r}"])
            if scenario.name == "baseline":
                base = row.seconds or row.deadline
                args.base_health = row.health_worst
            rows.append(row)
            print("\n".join(table([row], base).splitlines()[2:]), file=sys.stderr)
            print(f"chaos: {scenario.name} took {time.time() - started:.0f} s", file=sys.stderr)
    except KeyboardInterrupt:
        print("chaos: interrupted, cleaning up", file=sys.stderr)
        return 130
    finally:
        if redis is not None:
            redis.close()
        if postgres is not None:
            postgres.close()
        if args.keep:
            print(f"chaos: logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    base = rows[0].seconds or 0.0
    print(table(rows, base))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=2, default=_json))
    missed = [r.scenario for r in rows if not r.passed and r.scenario not in args.expect_fail]
    expected = [r.scenario for r in rows if not r.passed and r.scenario in args.expect_fail]
    if expected:
        print(f"chaos: failed as expected (--expect-fail): {', '.join(expected)}")
    return 1 if missed else 0


def _json(value: Any) -> Any:
    return str(value)


if __name__ == "__main__":
    raise SystemExit(main())
