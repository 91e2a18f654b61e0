"""OTPs while a campaign saturates their account: latency with and without the reserve.

Issue 12: OTP p99 <= 300 ms under a saturating campaign on the real stack.
Per run: a scratch PostgreSQL database, Redis, the panelsms simulator in its
own process (``--latency-ms``), and the production shape: a Celery prefork
worker on the ``campaign`` queue (``--workers`` processes) and one apart on
``otp`` with ``--prefetch-multiplier 1``. A campaign of ``--messages`` on
one panelsms account (``rate = burst = --rate``) keeps its bucket empty;
meanwhile ``--otps`` OTPs to the same account are sent one every
``--otp-every`` seconds (``producer.api.send``). Each OTP's latency is its
``sent_at - created_at`` (accepted until the provider answered).

The baseline, in the same run, is the same stack with ``SMSQ_OTP_RESERVE=0``
(the campaign may take the account's last token; before issue 12). Runs
alternate baseline / smsq, ``--repeats`` times; medians reported. Also
shown: the campaign's weakest 5-s rate at the provider, against ``--rate``
(the bucket kept busy while OTPs are mixed in).

    .venv/bin/python bench/otp_priority.py                 # ~3 min
    .venv/bin/python bench/otp_priority.py --repeats 1 --json out.json

It creates (and drops) its own PostgreSQL database and uses Redis database 9.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import scratch_dir
from bench.brand_fill import Run, numbers, weakest_five_seconds
from models.status import MessageKind


class OtpRun(Run):
    """brand_fill's stack (a panelsms account named ``brand``), with two workers."""

    def start_workers(self, reserve: float) -> list[subprocess.Popen[bytes]]:
        self.env["SMSQ_OTP_RESERVE"] = str(reserve)
        tag = f"reserve-{reserve:g}"
        return [
            self.start_celery_worker(
                "worker.app", "campaign,transactional", self.args.workers, f"bulk-{tag}"
            ),
            self.start_celery_worker(
                "worker.app", "otp", 1, f"otp-{tag}", extra=("--prefetch-multiplier", "1")
            ),
        ]


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, 15)
    for process in processes:
        process.wait(30)


def measure(run: OtpRun, reserve: float) -> dict[str, Any]:
    os.environ.update({k: v for k, v in run.env.items() if k.startswith("SMSQ_")})
    from sqlalchemy import func, select

    from models.tables import Message
    from producer.api import Producer
    from smsq.core.settings import Settings

    run.reset()
    workers = run.start_workers(reserve)
    args = run.args
    try:
        with Producer.from_settings(Settings()) as producer:
            receipt = producer.submit_campaign(
                "bench", numbers(args.messages), "Spring sale", provider="brand"
            )
            assert receipt.accepted == args.messages, receipt
            time.sleep(2.0)  # the campaign has drained the bucket
            otp_ids = []
            for i in range(args.otps):
                message = producer.send(
                    f"+49170{i:07d}",
                    f"Your code is {i:06d}",
                    kind=MessageKind.OTP,
                    provider="brand",
                    stop_list=False,
                )
                otp_ids.append(message.id)
                time.sleep(args.otp_every)
            deadline = time.monotonic() + args.timeout
            while run.sent() < args.messages + args.otps:
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {run.sent()} sent after {args.timeout} s")
                time.sleep(0.1)
        with run.engine.connect() as conn:
            rows = conn.execute(
                select(Message.created_at, Message.sent_at).where(Message.id.in_(otp_ids))
            ).all()
            left = conn.execute(
                select(func.count())
                .select_from(Message)
                .where(Message.kind == "campaign", Message.sent_at.is_(None))
            ).scalar_one()
    finally:
        stop(workers)
    latencies = sorted(
        (sent - created).total_seconds() * 1000 for created, sent in rows if sent is not None
    )
    stats = httpx.get(f"{run.sim_url}/_stats", timeout=10).json()
    per_second = {int(k): int(v) for k, v in stats["per_second"].items()}
    return {
        "reserve_s": reserve,
        "otps": len(latencies),
        "otp_p50_ms": statistics.median(latencies),
        "otp_p99_ms": latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))],
        "otp_max_ms": latencies[-1],
        "campaign_unsent": left,
        "weakest_5s_rate": weakest_five_seconds(per_second),
        "duplicates": len(stats["duplicates"]),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=6000, help="campaign size")
    ap.add_argument("--rate", type=int, default=300, help="the account's rate and burst, /s")
    ap.add_argument("--otps", type=int, default=60, help="OTPs per run")
    ap.add_argument("--otp-every", type=float, default=0.25, help="seconds between OTPs")
    ap.add_argument("--reserve", type=float, default=0.1, help="SMSQ_OTP_RESERVE of the smsq runs")
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--workers", type=int, default=2, help="campaign worker processes")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each; medians reported")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per run at most")
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/9")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    args.adapter, args.burst, args.max_numbers = "panelsms", args.rate, 1

    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "smsq": []}
    run = OtpRun(args, scratch_dir("otp-priority"))
    try:
        for _ in range(args.repeats):
            for label, reserve in (("baseline", 0.0), ("smsq", args.reserve)):
                figures = measure(run, reserve)
                runs[label].append(figures)
                print(f"{label:>8}: {json.dumps(figures)}", flush=True)
    finally:
        run.stop()

    print(f"\n{'':10} {'OTP p50 ms':>12} {'OTP p99 ms':>12} {'max ms':>10} {'weakest 5 s':>12}")
    result: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if k != "json"}}
    for label, rs in runs.items():
        medians = {
            key: statistics.median(r[key] for r in rs if r[key] is not None)
            for key in ("otp_p50_ms", "otp_p99_ms", "otp_max_ms", "weakest_5s_rate")
        }
        result[label] = {"runs": rs, "medians": medians}
        print(
            f"{label:10} {medians['otp_p50_ms']:>12.1f} {medians['otp_p99_ms']:>12.1f} "
            f"{medians['otp_max_ms']:>10.1f} {medians['weakest_5s_rate']:>10.1f}/s"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
