"""Brand requests under a throttle: numbers per request, smsq against its old behaviour, one run.

A brand campaign goes from submit until every row is ``sent`` through real
PostgreSQL, Redis, a Celery prefork worker and the provider simulator (its
own process, answering after ``--latency-ms``), on an account with ``rate =
200``, ``burst = 200`` and ``max_numbers = 100`` (issue 12's shape). The
simulator counts the requests. Two shapes: a 2,000-number campaign (the
bucket is the limit) and 250 numbers alone.

The baseline is the same worker with ``SMSQ_FILL_WAIT=0``: each request
takes what the bucket holds at that instant (the behaviour before issue 12).
Runs alternate baseline / smsq, ``--repeats`` times; medians reported. Also
shown, as the simulator counted them: the most numbers accepted in one
calendar second (the bucket allows rate + burst in any second) and the
weakest rate over 5 whole seconds while the campaign was going out, against
the account's rate.

    .venv/bin/python bench/brand_fill.py                  # ~3 min
    .venv/bin/python bench/brand_fill.py --repeats 1 --json out.json
    .venv/bin/python bench/brand_fill.py --adapter panelsms --rate 100 --burst 100 --sizes 3000

With ``--adapter panelsms`` (one number per request, so the baseline is the
same code) what counts is the weakest 5 s: the bucket kept busy.

It creates (and drops) its own PostgreSQL database and uses Redis database 11.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import Stack, free_port, scratch_dir
from models.tables import Message

PANELSMS = """
[providers.brand]
adapter = "panelsms"
url = "{sim}/sendMtSms.php"
user = "demo@example.com"
api_key = "demo-panel-key"
sender = "SMSQ"
rate = {rate}
burst = {burst}
dlr = false
"""
PROVIDERS = """
[providers.brand]
adapter = "brand"
url = "{sim}/brand/send"
key = "demo-brand-key"
brand_id = "SMSQ"
max_numbers = {max_numbers}
rate = {rate}
burst = {burst}
dlr = false
"""


class Run(Stack):
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        sim_port = free_port()
        self.sim_url = f"http://127.0.0.1:{sim_port}"
        providers = tmp / "providers.toml"
        template = PANELSMS if args.adapter == "panelsms" else PROVIDERS
        providers.write_text(
            template.format(
                sim=self.sim_url, max_numbers=args.max_numbers, rate=args.rate, burst=args.burst
            )
        )
        super().__init__(
            args.postgres,
            tmp,
            {
                "SMSQ_REDIS_URL": args.redis,
                "SMSQ_BROKER_URL": args.redis,
                "SMSQ_PROVIDERS_FILE": str(providers),
                "SMSQ_DEFAULT_PROVIDER": "brand",
            },
        )
        self.redis = redis.Redis.from_url(args.redis)
        self.redis.flushdb()
        self.start_simulator(sim_port, args.latency_ms)
        self.worker_process: subprocess.Popen[bytes] | None = None

    def start_worker(self, fill_wait: float) -> None:
        self.stop_worker()
        self.env["SMSQ_FILL_WAIT"] = str(fill_wait)
        name = f"worker-fill-{fill_wait:g}"
        self.worker_process = self.start_celery_worker(
            "worker.app", "otp,transactional,campaign", self.args.workers, name
        )

    def stop_worker(self) -> None:
        if self.worker_process is not None and self.worker_process.poll() is None:
            os.killpg(self.worker_process.pid, 15)
            self.worker_process.wait(30)
        self.worker_process = None

    def reset(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(text("TRUNCATE message_events, messages, campaigns CASCADE"))
        httpx.post(f"{self.sim_url}/_stats/reset", timeout=10)
        # A full bucket at the start of every run, whatever the last one left.
        self.redis.flushdb()

    def sent(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(Message).where(Message.status == "sent")
                ).scalar_one()
            )


def numbers(n: int) -> list[str]:
    return [f"+4915123{i:06d}" for i in range(n)]


def weakest_five_seconds(per_second: dict[int, int]) -> float | None:
    """The lowest rate over 5 whole seconds at the provider, the first and the
    last second (partial) left out."""
    if not per_second:
        return None
    first, last = min(per_second) + 1, max(per_second) - 1
    if last - first + 1 < 5:
        return None
    return min(
        sum(per_second.get(s, 0) for s in range(start, start + 5)) / 5
        for start in range(first, last - 3)
    )


def measure(run: Run, n: int) -> dict[str, Any]:
    os.environ.update({k: v for k, v in run.env.items() if k.startswith("SMSQ_")})
    from producer.api import Producer
    from smsq.core.settings import Settings

    run.reset()
    with Producer.from_settings(Settings()) as producer:
        t0 = time.perf_counter()
        receipt = producer.submit_campaign("bench", numbers(n), "Spring sale", provider="brand")
        assert receipt.accepted == n, receipt
        deadline = t0 + run.args.timeout
        while run.sent() < n:
            if time.perf_counter() > deadline:
                raise SystemExit(f"only {run.sent()} of {n} sent after {run.args.timeout} s")
            time.sleep(0.05)
        seconds = time.perf_counter() - t0
    stats = httpx.get(f"{run.sim_url}/_stats", timeout=10).json()
    per_second = {int(k): int(v) for k, v in stats["per_second"].items()}
    requests = int(stats["requests"]["total"])
    return {
        "numbers": n,
        "requests": requests,
        "numbers_per_request": n / requests,
        "limit": math.ceil(n / run.args.max_numbers * 1.05),
        "seconds": seconds,
        "duplicates": len(stats["duplicates"]),
        "most_in_1s": int(stats["max_per_second"]),
        "weakest_5s_rate": weakest_five_seconds(per_second),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2000,250", help="campaign sizes, comma-separated")
    ap.add_argument("--rate", type=int, default=200)
    ap.add_argument("--burst", type=int, default=200)
    ap.add_argument("--max-numbers", type=int, default=100)
    ap.add_argument(
        "--adapter",
        choices=["brand", "panelsms"],
        default="brand",
        help="panelsms: one number per request; what counts is the bucket kept busy",
    )
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--workers", type=int, default=2, help="worker processes")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each; medians reported")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per run at most")
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/11")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    run = Run(args, scratch_dir("brand-fill"))
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {
        "baseline": {n: [] for n in sizes},
        "smsq": {n: [] for n in sizes},
    }
    try:
        for _ in range(args.repeats):
            for label, fill_wait in (("baseline", 0.0), ("smsq", 1.0)):
                run.start_worker(fill_wait)
                for n in sizes:
                    runs[label][n].append(measure(run, n))
        run.stop_worker()
    finally:
        run.stop()

    print(
        f"{args.adapter} account rate {args.rate}/s, burst {args.burst}, "
        f"max_numbers {args.max_numbers}; "
        f"{args.workers} worker processes; medians of {args.repeats} runs"
    )
    print(
        f"{'':9} {'numbers':>7} {'requests':>8} {'limit':>6} {'per req':>7} {'seconds':>7} "
        f"{'max/1s':>6} {'min 5s rate':>11} {'dup':>4}"
    )
    medians: dict[str, dict[int, dict[str, float]]] = {}
    for label in ("baseline", "smsq"):
        medians[label] = {}
        for n in sizes:
            rs = runs[label][n]
            weakest = [r["weakest_5s_rate"] for r in rs if r["weakest_5s_rate"] is not None]
            m = {
                "requests": statistics.median(r["requests"] for r in rs),
                "numbers_per_request": statistics.median(r["numbers_per_request"] for r in rs),
                "seconds": statistics.median(r["seconds"] for r in rs),
                "most_in_1s": max(r["most_in_1s"] for r in rs),
                "duplicates": max(r["duplicates"] for r in rs),
            }
            if weakest:
                m["weakest_5s_rate"] = statistics.median(weakest)
            medians[label][n] = m
            print(
                f"{label:9} {n:>7} {m['requests']:>8.0f} {rs[0]['limit']:>6} "
                f"{m['numbers_per_request']:>7.1f} {m['seconds']:>7.1f} {m['most_in_1s']:>6} "
                f"{m.get('weakest_5s_rate', float('nan')):>11.1f} {m['duplicates']:>4}"
            )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": vars(args) | {"json": None}, "runs": runs, "medians": medians}, indent=2
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
