"""HTTP API throughput: the delivery-report receiver and ``POST /v1/messages``.

``smsq api`` runs as its own process (uvicorn, ``--api-workers`` processes)
on a scratch PostgreSQL database; the driver is one asyncio process with an
aiohttp client keeping ``--concurrency`` requests in flight. In the same run
and against the same server, ``GET /healthz`` (no database, no auth) is
measured as the framework's ceiling on this machine, so the figures can be
read as a share of what the stack could do at all.

    .venv/bin/python bench/api.py                      # both, median of 3 runs
    .venv/bin/python bench/api.py --only dlr --requests 20000 --json out.json

Every report and message is checked in the database afterwards, so a fast
but lossy run cannot pass: reports must have moved every message to
``delivered``, and every accepted message must be a row.

The receiver answers once a report is queued in Redis; the API's report
appliers record it in the database moments later. So two figures for
reports: ``rate`` (answered 2xx per second, what a provider sees) and
``applied_rate`` (reports in the database per second, from the first
request until the last report was applied); the server CPU per report
includes applying it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import BIN, Stack, free_port, group_cpu_seconds, scratch_dir
from models.ids import new_id
from models.tables import Message

Request = Callable[[aiohttp.ClientSession, int], Awaitable[int]]


async def drive(base: str, requests: int, concurrency: int, request: Request) -> dict[str, Any]:
    """Send ``requests`` requests, ``concurrency`` at a time; count statuses."""
    statuses: dict[int, int] = {}
    next_index = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, connector=connector) as http:

        async def loop() -> None:
            nonlocal next_index
            while next_index < requests:
                i = next_index
                next_index += 1
                status = await request(http, i)
                statuses[status] = statuses.get(status, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        seconds = time.perf_counter() - t0
    return {
        "requests": requests,
        "seconds": seconds,
        "rate": requests / seconds,
        "statuses": statuses,
    }


class Bench(Stack):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(
            args.postgres,
            scratch_dir("bench-api"),
            {
                "SMSQ_REDIS_URL": args.redis,
                "SMSQ_BROKER_URL": args.redis,
                "SMSQ_API_RATE_LIMIT": "1000000",
                "SMSQ_API_KEY_CACHE_SECONDS": "5",
            },
        )
        self.args = args
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        server = self.spawn(
            [
                str(BIN / "smsq"),
                "api",
                "--port",
                str(port),
                "--workers",
                str(args.api_workers),
            ],
            "api",
        )
        try:
            self.wait_http(f"{self.base}/healthz")
        except BaseException:
            self.stop()  # an API that started late must not live on, applying reports
            raise
        assert server.poll() is None
        self.server = server

    def reset(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(text("TRUNCATE message_events, messages, idempotency_records CASCADE"))

    def sent_messages(self, n: int) -> list[str]:
        ids = [new_id() for _ in range(n)]
        rows = [
            {
                "id": id_,
                "to": f"+4915123{i:06d}",
                "text": "Benchmark message",
                "kind": "transactional",
                "provider": "panel",
                "status": "sent",
                "encoding": "gsm7",
                "segments": 1,
                "attempts": 1,
                "client_id": "",
                "stop_list": True,
                "flash": False,
                "parts_sent": 1,
                "unknown_resends": 0,
                "provider_message_id": id_,
            }
            for i, id_ in enumerate(ids)
        ]
        with self.engine.begin() as conn:
            conn.execute(insert(Message), rows)
        return ids

    def count(self, status: str) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(Message).where(Message.status == status)
                ).scalar_one()
            )

    def run(self, request: Request, settle: Callable[[], None] | None = None) -> dict[str, Any]:
        """Drive the requests; ``settle`` waits for work the answers left behind."""
        a = self.args
        before = group_cpu_seconds(self.server.pid)
        started = time.perf_counter()
        result = asyncio.run(drive(self.base, a.requests, a.concurrency, request))
        if settle is not None:
            settle()
            result["settled_seconds"] = time.perf_counter() - started
        # CPU the API processes spent per request: steadier than the rate on a
        # shared machine (the load generator and PostgreSQL are not counted).
        cpu = group_cpu_seconds(self.server.pid) - before
        result["server_cpu_ms_per_request"] = 1000 * cpu / a.requests
        return result


def measure_healthz(bench: Bench) -> dict[str, Any]:
    async def request(http: aiohttp.ClientSession, i: int) -> int:
        async with http.get("/healthz") as r:
            await r.read()
            return r.status

    return bench.run(request)


def measure_dlr(bench: Bench) -> dict[str, Any]:
    ids = bench.sent_messages(bench.args.requests)

    async def request(http: aiohttp.ClientSession, i: int) -> int:
        body = {"transactionId": ids[i], "status": "DELIVERED", "destination": "4915123000000"}
        async with http.post("/dlr/panelsms", json=body) as r:
            await r.read()
            return r.status

    def applied() -> None:
        deadline = time.monotonic() + 120
        while bench.count("delivered") < bench.args.requests and time.monotonic() < deadline:
            time.sleep(0.05)

    result = bench.run(request, settle=applied)
    result["applied_rate"] = bench.args.requests / result["settled_seconds"]
    result["delivered_in_db"] = bench.count("delivered")
    if result["delivered_in_db"] != bench.args.requests:
        raise SystemExit(f"dlr: only {result['delivered_in_db']} messages delivered: {result}")
    return result


def measure_messages(bench: Bench, key: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}

    async def request(http: aiohttp.ClientSession, i: int) -> int:
        body = {"to": f"+4915123{i:06d}", "text": "Your code is in the app"}
        async with http.post("/v1/messages", json=body, headers=headers) as r:
            await r.read()
            return r.status

    result = bench.run(request)
    result["queued_in_db"] = bench.count("queued")
    if result["queued_in_db"] != bench.args.requests:
        raise SystemExit(f"messages: only {result['queued_in_db']} rows queued: {result}")
    return result


def api_key(bench: Bench) -> str:
    from models.db import make_sessionmaker
    from producer.keys import create_key

    with make_sessionmaker(bench.engine)() as session:
        _row, key = create_key(session, "bench")
    return key


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["dlr", "messages"], help="measure one of the two")
    ap.add_argument("--requests", type=int, default=10_000, help="requests per run")
    ap.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    ap.add_argument("--api-workers", type=int, default=2, help="uvicorn processes")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each; medians reported")
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()

    bench = Bench(args)
    measures: dict[str, Callable[[], dict[str, Any]]] = {"healthz": lambda: measure_healthz(bench)}
    if args.only in (None, "dlr"):
        measures["dlr"] = lambda: measure_dlr(bench)
    if args.only in (None, "messages"):
        key = api_key(bench)
        measures["messages"] = lambda: measure_messages(bench, key)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in measures}
    try:
        for _ in range(args.repeats):  # interleaved, so drift hits every figure alike
            for name, measure in measures.items():
                bench.reset()
                runs[name].append(measure())
    finally:
        bench.stop()

    medians = {name: statistics.median(r["rate"] for r in rs) for name, rs in runs.items()}
    cpu = {
        name: statistics.median(r["server_cpu_ms_per_request"] for r in rs)
        for name, rs in runs.items()
    }
    print(f"{'':10} {'requests':>9} {'runs (req/s)':>28} {'median':>8} {'of healthz':>10}")
    for name, rs in runs.items():
        rates = " / ".join(f"{r['rate']:.0f}" for r in rs)
        share = medians[name] / medians["healthz"]
        print(
            f"{name:10} {args.requests:>9} {rates:>28} {medians[name]:>8.0f} {share:>9.0%}"
            f"  server CPU {cpu[name]:.2f} ms/request"
        )
        if name == "dlr":
            applied = statistics.median(r["applied_rate"] for r in rs)
            rates = " / ".join(f"{r['applied_rate']:.0f}" for r in rs)
            print(f"{'  applied':10} {args.requests:>9} {rates:>28} {applied:>8.0f}")
    if args.json:
        result = {
            "args": {k: str(v) for k, v in vars(args).items()},
            "runs": runs,
            "medians": medians,
            "server_cpu_ms_per_request": cpu,
        }
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
