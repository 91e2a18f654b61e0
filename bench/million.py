"""A 1,000,000-recipient brand campaign end to end, and the same one scheduled for tomorrow.

Issue 12, item 7, on the real stack: a scratch PostgreSQL database (created,
migrated, dropped at the end), its own Redis database (broker and throttle
share it, as in production), the provider simulator in its own process
(answering after ``--latency-ms``, brand delivery reports off), and a Celery
prefork worker (``--workers`` processes on the ``campaign`` queue). The brand
account has ``max_numbers = 500``, ``rate = 10000``, ``burst = 10000`` and no
reports (``dlr = false``, no ``callback_key``; the simulator's
``brand_callback_url`` is set to null through ``POST /_config``).

Phase ``send``: a CSV of ``--recipients`` distinct numbers (``phone,name``,
one static text, so a brand request can carry 500 of them) is submitted as an
operator would, ``smsq campaign submit FILE --provider brand --json`` in its
own process (it streams the file; nothing holds the list), and timed from the
start of that command until the last row is ``sent`` (the latest ``sent_at``):
the upload (until the command exits) and the sending separately. Reported:
the requests the simulator counted, numbers per request, numbers the
simulator accepted twice (must be 0), the peak RSS of every process of the
worker and of the uploader (``VmHWM``/``VmRSS`` sampled every second; the
uploader's also from its rusage), Redis memory (the instance's
``used_memory``, shared with whatever else uses it, and the keys of this
database), the broker's tasks, database growth (``pg_database_size``, and
``pg_total_relation_size`` of ``messages`` and ``message_events``) and the
CPU of smsq's processes (worker group + uploader; simulator, PostgreSQL and
Redis not counted).

Phase ``scheduled``: the same CSV (``--scheduled-recipients`` rows) with
``--at`` tomorrow, while ``smsq beat`` and a worker on every queue run (the
beat's own tasks go to ``transactional`` and ``webhooks``). The broker's
tasks -- every queue's length and kombu's ``unacked`` hash, where the Redis
transport keeps reserved and ETA tasks -- are counted every second, by task
name, during the upload and for ``--scheduled-watch`` seconds after it. A
scheduled campaign should hold O(1) of them (none per row or per batch)
until it starts.

    .venv/bin/python bench/million.py --json million.json        # ~12 min: 10 + 2
    .venv/bin/python bench/million.py --recipients 50000          # ~1.5 min
    .venv/bin/python bench/million.py --phases scheduled --scheduled-recipients 200000

Targets: upload to last ``sent`` <= 600 s, worker RSS <= 200 MB per process,
0 duplicates, broker tasks of the scheduled campaign O(1). Exit status 1 when
the campaign did not finish within ``--timeout``. Uses Redis database 10 by
default and leaves it empty.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import resource
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import (
    BIN,
    Stack,
    free_port,
    group_cpu_seconds,
    group_pids,
    memory_kb,
    scratch_dir,
)
from models.tables import Message
from smsq.core.names import QUEUES

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
# One static text: brand packs a request with numbers of the same text, so a
# template field per row ({name}) would make every request carry one number.
TEXT = "Spring sale: 20% off everything today at Example Shop. Reply STOP to opt out"
PENDING = ("accepted", "scheduled", "queued", "sending")
MB = 1024 * 1024


def generate_csv(path: Path, rows: int) -> int:
    """``phone,name`` with ``rows`` distinct valid German mobile numbers; returns bytes."""
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("phone,name\r\n")
        block: list[str] = []
        for i in range(rows):
            block.append(f"+49170{i:07d},Customer {i}\r\n")
            if len(block) == 10_000:
                out.write("".join(block))
                block.clear()
        out.write("".join(block))
    return path.stat().st_size


# --- the broker's tasks -----------------------------------------------------------


def broker_tasks(r: redis.Redis, *, names: bool = False) -> dict[str, Any]:
    """Tasks held by kombu's Redis transport in this database: every queue's
    list (priority variants too) and the ``unacked`` hash (tasks a worker
    reserved, ETA tasks among them). With ``names``, counted by task name."""
    queues: dict[str, int] = {}
    by_name: Counter[str] = Counter()
    for queue in QUEUES:
        keys = [queue.encode(), *r.scan_iter(match=f"{queue}\x06\x16*")]
        queues[queue] = sum(int(r.llen(key)) for key in keys)
        if names and queues[queue]:
            for key in keys:
                for raw in r.lrange(key, 0, -1):
                    by_name[_task_name(raw)] += 1
    unacked = int(r.hlen("unacked"))
    eta = 0
    if names and unacked:
        for raw in r.hvals("unacked"):  # [message, exchange, routing key]
            headers = json.loads(raw)[0].get("headers", {})
            by_name[str(headers.get("task", "?"))] += 1
            eta += headers.get("eta") is not None
    result: dict[str, Any] = {
        "total": sum(queues.values()) + unacked,
        "queues": queues,
        "unacked": unacked,
    }
    if names:
        result["by_task"] = dict(by_name)
        result["unacked_with_eta"] = eta
    return result


def _task_name(raw: bytes | str) -> str:
    headers = json.loads(raw).get("headers", {})  # Celery's message protocol 2
    return str(headers.get("task", "?"))


def db_key_bytes(r: redis.Redis) -> int:
    """What this database's keys take in Redis (``MEMORY USAGE``, exact)."""
    total = 0
    for key in r.scan_iter(count=1000):
        total += int(r.memory_usage(key, samples=0) or 0)
    return total


# --- sampling ---------------------------------------------------------------------


class Sampler(threading.Thread):
    """Every second: memory of the watched process groups, Redis, the broker."""

    def __init__(self, r: redis.Redis, every: float = 1.0, *, names: bool = False) -> None:
        super().__init__(name="sampler", daemon=True)
        self.r = r
        self.every = every
        self.names = names  # count the broker's tasks by name (decodes each one)
        self.by_task_peak: Counter[str] = Counter()
        self.groups: dict[int, str] = {}  # process group -> label
        self.peaks: dict[int, dict[str, Any]] = {}  # pid -> label, rss, hwm
        self.used_memory_base = int(r.info("memory")["used_memory"])
        self.used_memory_peak = self.used_memory_base
        self.db_bytes_peak = 0
        self.broker_peak: dict[str, int] = {"total": 0, "unacked": 0}
        self.latest: dict[str, Any] = {}
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def watch(self, group: int, label: str) -> None:
        with self._lock:
            self.groups[group] = label
        self.sample_memory()

    def forget(self, group: int) -> None:
        with self._lock:
            self.groups.pop(group, None)

    def run(self) -> None:
        while not self._halt.wait(self.every):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
        self.sample()

    def sample(self) -> None:
        self.sample_memory()
        used = int(self.r.info("memory")["used_memory"])
        db_bytes = db_key_bytes(self.r)
        tasks = broker_tasks(self.r, names=self.names)
        with self._lock:
            for name, k in tasks.get("by_task", {}).items():
                self.by_task_peak[name] = max(self.by_task_peak[name], k)
            self.used_memory_peak = max(self.used_memory_peak, used)
            self.db_bytes_peak = max(self.db_bytes_peak, db_bytes)
            self.broker_peak["total"] = max(self.broker_peak["total"], tasks["total"])
            self.broker_peak["unacked"] = max(self.broker_peak["unacked"], tasks["unacked"])
            for queue, n in tasks["queues"].items():
                self.broker_peak[queue] = max(self.broker_peak.get(queue, 0), n)
            self.latest = {"redis_used": used, "db_bytes": db_bytes, "broker": tasks["total"]}

    def sample_memory(self) -> None:
        with self._lock:
            groups = dict(self.groups)
        for group, label in groups.items():
            for pid in group_pids(group):
                kb = memory_kb(pid)
                if kb is None:
                    continue
                with self._lock:
                    peak = self.peaks.setdefault(
                        pid,
                        {"label": label if pid == group else f"{label} child", "rss": 0, "hwm": 0},
                    )
                    peak["rss"] = max(peak["rss"], kb[0])
                    peak["hwm"] = max(peak["hwm"], kb[1])

    def peaks_mb(self, label: str) -> list[dict[str, Any]]:
        """The processes of ``label``'s group: pid, role, peak RSS sampled and VmHWM, MB."""
        with self._lock:
            return [
                {
                    "pid": pid,
                    "process": p["label"],
                    "rss_mb": round(p["rss"] / 1024, 1),
                    "hwm_mb": round(p["hwm"] / 1024, 1),
                }
                for pid, p in sorted(self.peaks.items())
                if p["label"].split(" ")[0] == label
            ]


# --- the stack --------------------------------------------------------------------


class Run(Stack):
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        sim_port = free_port()
        self.sim_url = f"http://127.0.0.1:{sim_port}"
        providers = tmp / "providers.toml"
        providers.write_text(
            PROVIDERS.format(
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
        # Reports off: the brand simulator owes a report for every number it
        # accepts whenever it has a callback URL (the vendor API has no
        # per-request switch); a million owed reports would load it.
        httpx.post(
            f"{self.sim_url}/_config", json={"brand_callback_url": None}, timeout=10
        ).raise_for_status()

    def stop_group(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            os.killpg(process.pid, 15)
            process.wait(30)

    def sim_stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.sim_url}/_stats", timeout=120).json())

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar_one()

    def sizes(self) -> dict[str, int]:
        return {
            "database": int(self.scalar("SELECT pg_database_size(current_database())")),
            "messages": int(self.scalar("SELECT pg_total_relation_size('messages')")),
            "message_events": int(self.scalar("SELECT pg_total_relation_size('message_events')")),
        }

    def pending(self) -> int:
        """Rows not yet sent (or otherwise ended): read from the status index."""
        return int(
            self.scalar("SELECT count(*) FROM messages WHERE status = ANY(:s)", s=list(PENDING))
        )

    def submit(
        self, csv_path: Path, name: str, at: str | None, sampler: Sampler
    ) -> tuple[subprocess.Popen[bytes], Path]:
        """``smsq campaign submit`` in its own process, watched by ``sampler``."""
        argv = [
            str(BIN / "smsq"),
            "campaign",
            "submit",
            str(csv_path),
            "--text",
            TEXT,
            "--name",
            name,
            "--provider",
            "brand",
            "--json",
        ]
        if at is not None:
            argv += ["--at", at]
        out = self.tmp / f"{name}.json"
        process = self.spawn(argv, name, stdout=out)
        sampler.watch(process.pid, "uploader")
        return process, out


class Uploader(threading.Thread):
    """Reaps the uploader the moment it exits, with its own rusage (CPU, peak RSS)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        super().__init__(name="uploader-wait", daemon=True)
        self.process = process
        self.ended: float | None = None
        self.status = -1
        self.usage: resource.struct_rusage | None = None

    def run(self) -> None:
        _, status, self.usage = os.wait4(self.process.pid, 0)
        self.ended = time.time()
        self.status = os.waitstatus_to_exitcode(status)
        self.process.returncode = self.status  # reaped here, not by Popen

    @property
    def cpu_seconds(self) -> float:
        return 0.0 if self.usage is None else self.usage.ru_utime + self.usage.ru_stime

    @property
    def max_rss_mb(self) -> float:
        return 0.0 if self.usage is None else self.usage.ru_maxrss / 1024  # kB on Linux


def receipt(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


# --- phase: send now --------------------------------------------------------------


def phase_send(run: Run, csv_path: Path, n: int) -> dict[str, Any]:
    args = run.args
    worker = run.start_celery_worker("worker.app", "campaign", args.workers, "worker-send")
    sampler = Sampler(run.redis)
    sampler.watch(worker.pid, "worker")
    sampler.start()
    httpx.post(f"{run.sim_url}/_stats/reset", timeout=10)
    before = run.sizes()
    worker_cpu = group_cpu_seconds(worker.pid)
    t0 = time.time()
    process, out = run.submit(csv_path, "million", None, sampler)
    uploader = Uploader(process)
    uploader.start()
    deadline = t0 + args.timeout
    done = False
    last_print = 0.0
    pending = n
    while time.time() < deadline:
        time.sleep(1.0)
        pending = run.pending()
        uploading = uploader.ended is None
        now = time.time()
        if now - last_print >= 10:
            last_print = now
            latest = sampler.latest
            print(
                f"  {now - t0:6.0f} s  {'uploading' if uploading else 'uploaded '}  "
                f"pending {pending:>8}  broker tasks {latest.get('broker', 0):>5}  "
                f"redis db {latest.get('db_bytes', 0) / MB:6.1f} MB",
                file=sys.stderr,
            )
        if not uploading and pending == 0:
            done = True
            break
    worker_cpu = group_cpu_seconds(worker.pid) - worker_cpu
    sampler.stop()
    uploader.join(5)
    after = run.sizes()
    run.stop_group(worker)

    with run.engine.connect() as conn:
        statuses = dict(
            conn.execute(select(Message.status, func.count()).group_by(Message.status)).all()
        )
        first_sent, last_sent = conn.execute(
            select(func.min(Message.sent_at), func.max(Message.sent_at))
        ).one()
    stats = run.sim_stats()
    per_number: dict[str, int] = stats["per_number"]
    twice = sum(1 for count in per_number.values() if count > 1)
    brand_requests = int(stats["requests"]["by_route"].get("/brand/send", 0))
    got = receipt(out)
    upload_end = uploader.ended or time.time()
    result: dict[str, Any] = {
        "recipients": n,
        "done": done,
        "receipt": {k: got.get(k) for k in ("campaign_id", "accepted", "rejected", "status")},
        "statuses": statuses,
        "upload_seconds": upload_end - t0,
        "uploader_exit": uploader.status,
        "first_sent_after": first_sent.timestamp() - t0 if first_sent else None,
        "total_seconds": last_sent.timestamp() - t0 if last_sent else None,
        "sending_seconds": (
            (last_sent - first_sent).total_seconds() if last_sent and first_sent else None
        ),
        "after_upload_seconds": last_sent.timestamp() - upload_end if last_sent else None,
        "requests": int(stats["requests"]["total"]),
        "brand_requests": brand_requests,
        "numbers_accepted": int(stats["accepted"]),
        "numbers_per_request": int(stats["accepted"]) / brand_requests if brand_requests else 0,
        "request_limit": math.ceil(n / args.max_numbers * 1.05),
        "numbers_twice_at_simulator": twice,
        "distinct_numbers_at_simulator": len(per_number),
        "rejected_by_simulator": stats["rejected"],
        "most_numbers_in_1s": int(stats["max_per_second"]),
        "worker_processes": sampler.peaks_mb("worker"),
        "uploader_process": sampler.peaks_mb("uploader"),
        "uploader_rusage_max_rss_mb": round(uploader.max_rss_mb, 1),
        "redis_used_memory_base_mb": round(sampler.used_memory_base / MB, 1),
        "redis_used_memory_peak_mb": round(sampler.used_memory_peak / MB, 1),
        "redis_db_keys_peak_mb": round(sampler.db_bytes_peak / MB, 1),
        "broker_tasks_peak": sampler.broker_peak,
        "db_before_mb": {k: round(v / MB, 1) for k, v in before.items()},
        "db_after_mb": {k: round(v / MB, 1) for k, v in after.items()},
        "db_growth_mb": {k: round((after[k] - before[k]) / MB, 1) for k in before},
        "cpu_seconds": {
            "worker": round(worker_cpu, 1),
            "uploader": round(uploader.cpu_seconds, 1),
            "total": round(worker_cpu + uploader.cpu_seconds, 1),
        },
    }
    result["cpu_ms_per_message"] = 1000 * result["cpu_seconds"]["total"] / n
    return result


# --- phase: scheduled for tomorrow ------------------------------------------------


def phase_scheduled(run: Run, csv_path: Path, n: int) -> dict[str, Any]:
    args = run.args
    worker = run.start_celery_worker(
        "worker.app", "otp,transactional,campaign,webhooks", args.workers, "worker-scheduled"
    )
    beat = run.spawn(
        [str(BIN / "smsq"), "beat", "--schedule", str(run.tmp / "beat-schedule")], "beat"
    )
    run.wait_for_log(beat, "beat", "beat: Starting")
    sampler = Sampler(run.redis, names=True)
    sampler.watch(worker.pid, "worker")
    sampler.start()
    before = run.sizes()
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).replace(microsecond=0)
    t0 = time.time()
    process, out = run.submit(csv_path, "million-tomorrow", tomorrow.isoformat(), sampler)
    uploader = Uploader(process)
    uploader.start()
    uploader.join(args.timeout)
    upload_seconds = (uploader.ended or time.time()) - t0
    sampler.sample()
    during_upload = dict(sampler.broker_peak)
    by_task_during_upload = dict(sampler.by_task_peak)
    # Watch the broker while the fleet runs (promoter every second, sweeper,
    # recovery): what does the scheduled campaign hold there?
    counts: list[dict[str, Any]] = []
    watch_end = time.time() + args.scheduled_watch
    while time.time() < watch_end:
        counts.append(broker_tasks(run.redis, names=True))
        time.sleep(1.0)
    sampler.stop()
    after = run.sizes()
    with run.engine.connect() as conn:
        campaign_id = receipt(out).get("campaign_id")
        statuses = dict(
            conn.execute(
                select(Message.status, func.count())
                .where(Message.campaign_id == campaign_id)
                .group_by(Message.status)
            ).all()
        )
    run.stop_group(beat)
    run.stop_group(worker)
    by_task: Counter[str] = Counter()
    for c in counts:
        for name, k in c["by_task"].items():
            by_task[name] = max(by_task[name], k)
    got = receipt(out)
    return {
        "recipients": n,
        "send_at": tomorrow.isoformat(),
        "receipt": {k: got.get(k) for k in ("campaign_id", "accepted", "rejected", "status")},
        "statuses": statuses,
        "upload_seconds": upload_seconds,
        "uploader_exit": uploader.status,
        "watched_seconds": args.scheduled_watch,
        "broker_tasks_max": max((c["total"] for c in counts), default=0),
        "broker_tasks_last": counts[-1] if counts else None,
        "broker_tasks_peak_by_task": dict(by_task),
        "broker_tasks_peak_during_upload": during_upload,
        "broker_tasks_peak_by_task_during_upload": by_task_during_upload,
        "redis_db_keys_peak_mb": round(sampler.db_bytes_peak / MB, 1),
        "uploader_rusage_max_rss_mb": round(uploader.max_rss_mb, 1),
        "db_growth_mb": {k: round((after[k] - before[k]) / MB, 1) for k in before},
    }


# --- report -------------------------------------------------------------------------


def print_send(r: dict[str, Any], args: argparse.Namespace) -> None:
    mark = "" if r["done"] else "  (NOT FINISHED within --timeout)"
    print(
        f"\nsend now: {r['recipients']:,} recipients, brand max_numbers {args.max_numbers}, "
        f"rate {args.rate}/s, burst {args.burst}, {args.workers} worker processes{mark}"
    )
    print(f"  receipt            {r['receipt']}; statuses {r['statuses']}")

    def secs(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f} s"

    print(
        f"  time               upload {secs(r['upload_seconds'])}, first sent after "
        f"{secs(r['first_sent_after'])}, last sent after {secs(r['total_seconds'])} "
        f"(target <= 600 s); sending {secs(r['sending_seconds'])}, "
        f"{secs(r['after_upload_seconds'])} after the upload ended"
    )
    print(
        f"  requests           {r['brand_requests']:,} brand (limit {r['request_limit']:,}), "
        f"{r['numbers_per_request']:.1f} numbers each; {r['numbers_accepted']:,} numbers "
        f"accepted, {r['numbers_twice_at_simulator']} twice; most in 1 s "
        f"{r['most_numbers_in_1s']:,}"
    )
    for p in r["worker_processes"] + r["uploader_process"]:
        print(
            f"  RSS {p['process']:<15} pid {p['pid']:>7}: peak sampled {p['rss_mb']:6.1f} MB, "
            f"VmHWM {p['hwm_mb']:6.1f} MB"
        )
    print(f"  RSS uploader (rusage) {r['uploader_rusage_max_rss_mb']:.1f} MB")
    print(
        f"  Redis              this db's keys peak {r['redis_db_keys_peak_mb']} MB; instance "
        f"used_memory {r['redis_used_memory_base_mb']} -> peak "
        f"{r['redis_used_memory_peak_mb']} MB (shared instance); broker tasks peak "
        f"{r['broker_tasks_peak']}"
    )
    print(f"  database growth    {r['db_growth_mb']} MB (after: {r['db_after_mb']})")
    print(
        f"  CPU                {r['cpu_seconds']} s, {r['cpu_ms_per_message']:.3f} ms per message"
    )


def print_scheduled(r: dict[str, Any]) -> None:
    print(f"\nscheduled for {r['send_at']}: {r['recipients']:,} recipients")
    print(f"  receipt            {r['receipt']}; statuses {r['statuses']}")
    print(f"  upload             {r['upload_seconds']:.1f} s")
    print(
        f"  broker tasks       at most {r['broker_tasks_max']} over {r['watched_seconds']:.0f} s "
        f"after the upload (by task, peak: {r['broker_tasks_peak_by_task']})"
    )
    print(
        f"  during the upload  {r['broker_tasks_peak_during_upload']} "
        f"(by task, peak: {r['broker_tasks_peak_by_task_during_upload']})"
    )
    print(f"  database growth    {r['db_growth_mb']} MB")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--recipients", type=int, default=1_000_000, help="campaign size")
    ap.add_argument(
        "--scheduled-recipients",
        type=int,
        help="size of the scheduled campaign (default: --recipients)",
    )
    ap.add_argument("--phases", default="send,scheduled", help="send, scheduled, or both")
    ap.add_argument("--rate", type=int, default=10_000, help="the account's rate, numbers/s")
    ap.add_argument("--burst", type=int, default=10_000, help="the account's bucket size")
    ap.add_argument("--max-numbers", type=int, default=500, help="numbers per brand request")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="simulator answer latency")
    ap.add_argument("--workers", type=int, default=2, help="worker processes")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per campaign at most")
    ap.add_argument(
        "--scheduled-watch", type=float, default=30.0, help="seconds to watch the broker"
    )
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/10")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    if not phases or phases - {"send", "scheduled"}:
        ap.error("--phases: send, scheduled, or both")
    n_scheduled = args.scheduled_recipients or args.recipients

    tmp = scratch_dir("million")
    csv_path = tmp / "recipients.csv"
    run = Run(args, tmp)
    result: dict[str, Any] = {"args": vars(args) | {"json": str(args.json)}}
    try:
        if "send" in phases:
            size = generate_csv(csv_path, args.recipients)
            print(f"CSV of {args.recipients:,} rows: {size / MB:.1f} MB", file=sys.stderr)
            result["send"] = phase_send(run, csv_path, args.recipients)
            print_send(result["send"], args)
        if "scheduled" in phases:
            generate_csv(csv_path, n_scheduled)
            result["scheduled"] = phase_scheduled(run, csv_path, n_scheduled)
            print_scheduled(result["scheduled"])
    finally:
        run.stop()
        run.redis.flushdb()
        csv_path.unlink(missing_ok=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0 if result.get("send", {}).get("done", True) else 1


if __name__ == "__main__":
    raise SystemExit(main())
