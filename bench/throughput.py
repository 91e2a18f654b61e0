"""End-to-end sending throughput: smsq against a naive baseline, one run.

A panelsms campaign goes from submit until every row is ``sent``, against the
provider simulator answering after ``--latency-ms`` (default 20 ms), through
real PostgreSQL, Redis and Celery worker processes. The baseline
(``bench/naive_worker.py``) is one Celery task per message, a sync httpx
client and one commit per message, with the same number of worker processes.

    .venv/bin/python bench/throughput.py                 # 20,000 messages, ~2-4 min
    .venv/bin/python bench/throughput.py --messages 5000 --baseline-messages 1000 --json out.json

It creates (and drops) its own PostgreSQL database and uses Redis database 14.
Delivery reports are off so the figure is the sending path alone. The
simulator runs as its own process (uvicorn), so the driver never shares its GIL.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import func, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import Stack, free_port, group_cpu_seconds, scratch_dir
from models.ids import new_id
from models.tables import Message

PROVIDERS = """
[providers.panel]
adapter = "panelsms"
url = "{sim}/sendMtSms.php"
user = "demo@example.com"
api_key = "demo-panel-key"
sender = "SMSQ"
rate = 100000
burst = 100000
dlr = false
"""


class Run(Stack):
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        sim_port = free_port()
        self.sim_url = f"http://127.0.0.1:{sim_port}"
        providers = tmp / "providers.toml"
        providers.write_text(PROVIDERS.format(sim=self.sim_url))
        super().__init__(
            args.postgres,
            tmp,
            {
                "SMSQ_REDIS_URL": args.redis,
                "SMSQ_BROKER_URL": args.redis,
                "SMSQ_PROVIDERS_FILE": str(providers),
                "SMSQ_DEFAULT_PROVIDER": "panel",
                "NAIVE_PANELSMS_URL": f"{self.sim_url}/sendMtSms.php",
            },
        )
        self.redis = redis.Redis.from_url(args.redis)
        self.redis.flushdb()
        self.start_simulator(sim_port, args.latency_ms)

    def worker(self, app: str, queue: str, name: str) -> subprocess.Popen[bytes]:
        return self.start_celery_worker(app, queue, self.args.workers, name)

    def sim_stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.sim_url}/_stats", timeout=10).json())

    def reset(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(text("TRUNCATE message_events, messages, campaigns CASCADE"))
        httpx.post(f"{self.sim_url}/_stats/reset", timeout=10)

    def sent(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(Message).where(Message.status == "sent")
                ).scalar_one()
            )

    def wait_all_sent(self, n: int, t0: float) -> float:
        deadline = t0 + self.args.timeout
        while True:
            if self.sent() >= n:
                return time.perf_counter() - t0
            if time.perf_counter() > deadline:
                raise SystemExit(f"only {self.sent()} of {n} sent after {self.args.timeout} s")
            time.sleep(0.05)


def numbers(n: int) -> list[str]:
    return [f"+4915123{i:06d}" for i in range(n)]


def measure_smsq(run: Run, worker_group: int) -> dict[str, Any]:
    """One campaign; besides the time, the CPU smsq's own processes spent per
    message: the worker's process group (main process and pool children) and
    the submitting call in this process (the simulator, PostgreSQL and Redis
    are not counted)."""
    os.environ.update({k: v for k, v in run.env.items() if k.startswith("SMSQ_")})
    from producer.api import Producer
    from smsq.core.settings import Settings

    n = run.args.messages
    with Producer.from_settings(Settings()) as producer:
        worker_cpu = group_cpu_seconds(worker_group)
        t0 = time.perf_counter()
        submit_cpu = time.process_time()
        receipt = producer.submit_campaign(
            "bench", numbers(n), "Benchmark message", provider="panel"
        )
        submit_cpu = time.process_time() - submit_cpu
        submitted = time.perf_counter() - t0
        seconds = run.wait_all_sent(n, t0)
        worker_cpu = group_cpu_seconds(worker_group) - worker_cpu
    assert receipt.accepted == n, receipt
    stats = run.sim_stats()
    return {
        "messages": n,
        "seconds": seconds,
        "submit_seconds": submitted,
        "rate": n / seconds,
        "accepted_by_provider": stats["accepted"],
        "duplicates": len(stats["duplicates"]),
        "worker_cpu_ms_per_message": 1000 * worker_cpu / n,
        "submit_cpu_ms_per_message": 1000 * submit_cpu / n,
        "cpu_ms_per_message": 1000 * (worker_cpu + submit_cpu) / n,
    }


def measure_naive(run: Run, app: Any) -> dict[str, Any]:
    n = run.args.baseline_messages
    rows = [
        {
            "id": new_id(),
            "to": to,
            "text": "Benchmark message",
            "kind": "transactional",
            "provider": "panel",
            "status": "queued",
            "encoding": "gsm7",
            "segments": 1,
            "attempts": 0,
            "client_id": "",
            "stop_list": True,
            "flash": False,
            "parts_sent": 0,
            "unknown_resends": 0,
        }
        for to in numbers(n)
    ]
    t0 = time.perf_counter()
    with run.engine.begin() as conn:
        conn.execute(insert(Message), rows)
    for row in rows:
        app.send_task("naive.send", args=[row["id"]], queue="naive")
    seconds = run.wait_all_sent(n, t0)
    stats = run.sim_stats()
    return {
        "messages": n,
        "seconds": seconds,
        "rate": n / seconds,
        "accepted_by_provider": stats["accepted"],
        "duplicates": len(stats["duplicates"]),
    }


def repeat(
    times: int, measure: Callable[[], dict[str, Any]], reset: Callable[[], None]
) -> list[dict[str, Any]]:
    results = []
    for _ in range(times):
        reset()
        results.append(measure())
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20_000, help="smsq campaign size")
    ap.add_argument(
        "--baseline-messages",
        type=int,
        default=3_000,
        help="naive baseline size (it is slow; its rate is what is compared)",
    )
    ap.add_argument("--latency-ms", type=float, default=20.0, help="simulator answer latency")
    ap.add_argument("--workers", type=int, default=2, help="worker processes, both sides")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each; medians reported")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per run at most")
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()

    run = Run(args, scratch_dir("bench"))
    try:
        from celery import Celery

        client = Celery("bench", broker=args.redis)
        ours_worker = run.worker("worker.app", "campaign", "smsq")
        ours = repeat(args.repeats, lambda: measure_smsq(run, ours_worker.pid), run.reset)
        os.killpg(ours_worker.pid, 15)
        ours_worker.wait(20)
        run.worker("bench.naive_worker", "naive", "naive")
        naive = repeat(args.repeats, lambda: measure_naive(run, client), run.reset)
    finally:
        run.stop()

    ours_rate = statistics.median(r["rate"] for r in ours)
    naive_rate = statistics.median(r["rate"] for r in naive)
    result = {
        "latency_ms": args.latency_ms,
        "workers": args.workers,
        "smsq": ours,
        "naive": naive,
        "smsq_rate_median": ours_rate,
        "naive_rate_median": naive_rate,
        "ratio": ours_rate / naive_rate,
    }
    print(f"{'':8} {'messages':>9} {'seconds':>8} {'msg/s':>8} {'duplicates':>10}")
    for label, runs in (("smsq", ours), ("naive", naive)):
        for r in runs:
            print(
                f"{label:8} {r['messages']:>9} {r['seconds']:>8.1f} {r['rate']:>8.0f} "
                f"{r['duplicates']:>10}"
            )
    print(
        f"median smsq {ours_rate:.0f} msg/s, naive {naive_rate:.0f} msg/s, "
        f"ratio {ours_rate / naive_rate:.1f}x"
    )
    cpu = {
        key: statistics.median(r[key] for r in ours)
        for key in ("cpu_ms_per_message", "worker_cpu_ms_per_message", "submit_cpu_ms_per_message")
    }
    result["smsq_cpu_ms_per_message_median"] = cpu
    print(
        f"smsq CPU per message (median): {cpu['cpu_ms_per_message']:.3f} ms = worker "
        f"{cpu['worker_cpu_ms_per_message']:.3f} + submit {cpu['submit_cpu_ms_per_message']:.3f}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
