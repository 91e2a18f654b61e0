"""Which HTTP transport should smsq's adapters use? Measure it.

Starts ``bench/_endpoint.py`` in a separate process (its own GIL) answering
every request after ``--latency-ms`` with a panelsms-style JSON body, then
POSTs form-encoded sends (user, apiKey, to, message, transactionId) with:

* ``httpx``    -- ``httpx.AsyncClient``, default httpcore/anyio transport
* ``aiohttp``  -- ``httpx.AsyncClient(transport=httpx_aiohttp.AiohttpTransport())``
* ``smsq``     -- ``providers.http.make_async_client()`` (the aiohttp transport
  plus smsq's exception mapping and pool gate), through ``client.post``
* ``request``  -- the same client through ``providers.request.send_request``,
  exactly what the adapters call (since issue 12 it hands the request to the
  client's transport directly, skipping the client's per-request layers)
* ``sync32``   -- one sync ``httpx.Client`` shared by a 32-thread pool
  (at most ``min(concurrency, 32)`` requests in flight)

at each ``--concurrency`` (async: that many worker coroutines over a pool of
that many connections). Every run uses a fresh client, a warm-up, then
``--requests`` timed requests; runs are interleaved across transports and
repeated ``--repeats`` times; the table shows the median and its ratio to
``httpx`` measured in the same run, plus the endpoint's CPU use (it must stay
well below 100 % or the endpoint, not the client, would be measured).

Usage::

    .venv/bin/python bench/transport.py                      # defaults, ~2.5 min
    .venv/bin/python bench/transport.py --latency-ms 50 --requests 1000 \\
        --concurrency 10,50,100 --repeats 3 --json transport.json

Exit status 0; 1 if any request failed (the figures would be meaningless).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import importlib.util
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from urllib.parse import quote, urlencode

import httpx
from httpx_aiohttp import AiohttpTransport

HAS_SNIFFIO = importlib.util.find_spec("sniffio") is not None
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SYNC_THREADS = 32
TIMEOUT = httpx.Timeout(30.0, connect=5.0, pool=30.0)
HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}

TRANSPORTS: dict[str, str] = {
    "httpx": "(a) httpx.AsyncClient, default transport",
    "aiohttp": "(b) httpx.AsyncClient + httpx_aiohttp.AiohttpTransport",
    "smsq": "(b') providers.http.make_async_client (aiohttp + mapping)",
    "request": "(b'') (b') through providers.request.send_request (adapters)",
    "sync32": f"(c) sync httpx.Client, {SYNC_THREADS} threads",
}


def form_params(i: int) -> dict[str, str]:
    """A realistic send's parameters."""
    return {
        "user": "bench-user",
        "apiKey": "0123456789abcdef0123456789abcdef",
        "to": f"+4915{i:09d}",
        "message": f"Your code is {i % 1000000:06d}. Valid 10 minutes — reply STOP to opt out.",
        "transactionId": f"bench-{i:08d}",
        "dcs": "8",
    }


def form_body(i: int) -> bytes:
    """A realistic send: what providers.request puts on the wire."""
    return urlencode(form_params(i), quote_via=quote, safe="").encode("ascii")


def check(status: int, content: bytes, i: int) -> None:
    """Parse the answer the way an adapter would; fail loudly on a wrong one."""
    tid = json.loads(content)["response"]["transactionId"]
    if status != 200 or tid != f"bench-{i:08d}":
        raise RuntimeError(f"bad answer for request {i}: HTTP {status} {content[:80]!r}")


# --------------------------------------------------------------------------- endpoint


class Endpoint:
    def __init__(self, latency_ms: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "_endpoint.py"), "--latency-ms", str(latency_ms)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "PORT":
            self.close()
            raise RuntimeError(f"endpoint did not start: {line!r}")
        self.port = int(line[1])
        self.url = f"http://127.0.0.1:{self.port}/api/sendMtSms.php"

    def stats(self) -> tuple[int, float]:
        """(requests served, CPU seconds used) so far."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/__stats")
            data = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        return int(data["requests"]), float(data["cpu"])

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------- clients


def async_client(kind: str, conc: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    if kind == "httpx":
        return httpx.AsyncClient(limits=limits, timeout=TIMEOUT)
    if kind == "aiohttp":
        return httpx.AsyncClient(transport=AiohttpTransport(limits=limits), timeout=TIMEOUT)
    if kind in ("smsq", "request"):
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from providers.http import make_async_client

        return make_async_client(transport="aiohttp", max_connections=conc, timeout=30.0)
    raise ValueError(kind)


async def drive_async(
    client: httpx.AsyncClient, url: str, conc: int, start: int, n: int, *, adapters: bool = False
) -> None:
    """``conc`` workers POST requests ``start``.. ``start + n``; ``adapters``:
    through ``providers.request.send_request``, else ``client.post``."""
    from providers.request import send_request

    ids = iter(range(start, start + n))  # shared: each worker takes the next id

    async def worker() -> None:
        for i in ids:
            if adapters:
                r = await send_request(client, "POST", url, form=form_params(i))
            else:
                r = await client.post(url, content=form_body(i), headers=HEADERS)
            check(r.status_code, r.content, i)

    await asyncio.gather(*(worker() for _ in range(conc)))


def drive_sync(
    client: httpx.Client, pool: ThreadPoolExecutor, url: str, conc: int, start: int, n: int
) -> None:
    ids = iter(range(start, start + n))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                i = next(ids, None)
            if i is None:
                return
            r = client.post(url, content=form_body(i), headers=HEADERS)
            check(r.status_code, r.content, i)

    for f in [pool.submit(worker) for _ in range(min(conc, SYNC_THREADS))]:
        f.result()


# --------------------------------------------------------------------------- runs


@dataclass
class Sample:
    rps: float
    client_cpu: float  # share of one core used by this process
    server_cpu: float  # share of one core used by the endpoint


def timed(ep: Endpoint, n: int, body: Callable[[], None]) -> Sample:
    served0, scpu0 = ep.stats()
    ccpu0, t0 = time.process_time(), time.perf_counter()
    body()
    elapsed = time.perf_counter() - t0
    ccpu = time.process_time() - ccpu0
    served1, scpu1 = ep.stats()
    if served1 - served0 != n:
        raise RuntimeError(f"endpoint saw {served1 - served0} requests, expected {n}")
    return Sample(n / elapsed, ccpu / elapsed, (scpu1 - scpu0) / elapsed)


def run_once(kind: str, ep: Endpoint, conc: int, n: int, warmup: int) -> Sample:
    if kind == "sync32":
        with (
            httpx.Client(
                limits=httpx.Limits(max_connections=SYNC_THREADS), timeout=TIMEOUT
            ) as client,
            ThreadPoolExecutor(SYNC_THREADS) as pool,
        ):
            drive_sync(client, pool, ep.url, conc, 0, warmup)
            return timed(ep, n, lambda: drive_sync(client, pool, ep.url, conc, warmup, n))

    async def main() -> Sample:
        adapters = kind == "request"
        async with async_client(kind, conc) as client:
            await drive_async(client, ep.url, conc, 0, warmup, adapters=adapters)
            served0, scpu0 = ep.stats()
            ccpu0, t0 = time.process_time(), time.perf_counter()
            await drive_async(client, ep.url, conc, warmup, n, adapters=adapters)
            elapsed = time.perf_counter() - t0
            ccpu = time.process_time() - ccpu0
            served1, scpu1 = ep.stats()
        if served1 - served0 != n:
            raise RuntimeError(f"endpoint saw {served1 - served0} requests, expected {n}")
        return Sample(n / elapsed, ccpu / elapsed, (scpu1 - scpu0) / elapsed)

    return asyncio.run(main())


@dataclass
class Cell:
    transport: str
    concurrency: int
    runs: list[Sample] = field(default_factory=list)
    median_rps: float = 0.0
    ratio_vs_httpx: float | None = None
    ceiling_rps: float = 0.0
    client_cpu: float = 0.0
    server_cpu_max: float = 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description="Benchmark smsq's candidate HTTP transports.")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="endpoint answer delay")
    ap.add_argument("--requests", type=int, default=1000, help="timed requests per run")
    ap.add_argument("--warmup", type=int, default=200, help="warm-up requests (at least 2 x c)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per cell; the median is shown")
    ap.add_argument("--concurrency", default="10,50,100", help="comma-separated in-flight counts")
    ap.add_argument(
        "--transports", default=",".join(TRANSPORTS), help=f"subset of {','.join(TRANSPORTS)}"
    )
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = ap.parse_args()

    concs = [int(c) for c in args.concurrency.split(",") if c.strip()]
    kinds = [k.strip() for k in args.transports.split(",") if k.strip()]
    if unknown := [k for k in kinds if k not in TRANSPORTS]:
        ap.error(f"unknown transport(s) {unknown}; choose from {list(TRANSPORTS)}")
    cells = {(k, c): Cell(k, c) for c in concs for k in kinds}

    started = time.perf_counter()
    ep = Endpoint(args.latency_ms)
    failed: str | None = None
    try:
        for rep, conc, kind in itertools.product(range(args.repeats), concs, kinds):
            warmup = max(args.warmup, 2 * conc)
            try:
                sample = run_once(kind, ep, conc, args.requests, warmup)
            except Exception as exc:
                failed = f"{kind} c={conc}: {type(exc).__name__}: {exc}"
                break
            cells[kind, conc].runs.append(sample)
            print(
                f"  run {rep + 1}/{args.repeats}  c={conc:<4} {kind:<8} {sample.rps:8.0f} req/s"
                f"  client cpu {sample.client_cpu:4.0%}  endpoint cpu {sample.server_cpu:4.0%}",
                file=sys.stderr,
                flush=True,
            )
    finally:
        ep.close()
    wall = time.perf_counter() - started
    if failed:
        print(f"FAILED: {failed}", file=sys.stderr)
        return 1

    latency = args.latency_ms / 1000.0
    for (kind, conc), cell in cells.items():
        cell.median_rps = statistics.median(s.rps for s in cell.runs)
        cell.client_cpu = statistics.median(s.client_cpu for s in cell.runs)
        cell.server_cpu_max = max(s.server_cpu for s in cell.runs)
        inflight = min(conc, SYNC_THREADS) if kind == "sync32" else conc
        cell.ceiling_rps = inflight / latency if latency > 0 else float("inf")
        base = cells.get(("httpx", conc))
        if base is not None:
            cell.ratio_vs_httpx = cell.median_rps / base.median_rps

    print()
    print(
        f"requests/s, median of {args.repeats} x {args.requests} POSTs; endpoint latency "
        f"{args.latency_ms:g} ms; {os.cpu_count()} CPUs; Python {platform.python_version()}; "
        f"httpx {metadata.version('httpx')}, httpx-aiohttp {metadata.version('httpx-aiohttp')}, "
        f"aiohttp {metadata.version('aiohttp')}"
    )
    width = max(len(TRANSPORTS[k]) for k in kinds)
    header = f"{'transport':<{width}}" + "".join(f"  {'c=' + str(c):>18}" for c in concs)
    print(header)
    print("-" * len(header))
    for kind in kinds:
        row = f"{TRANSPORTS[kind]:<{width}}"
        for c in concs:
            cell = cells[kind, c]
            ratio = f"x{cell.ratio_vs_httpx:.2f}" if cell.ratio_vs_httpx is not None else ""
            row += f"  {cell.median_rps:>10,.0f} {ratio:>7}"
        print(row)
    ceil = f"{'ceiling (in-flight / latency)':<{width}}"
    for c in concs:
        ceil += f"  {c / latency if latency else float('inf'):>10,.0f} {'':>7}"
    print(ceil)
    print()
    print("CPU, median client process / max endpoint process (100 % = one core):")
    for kind in kinds:
        parts = [
            f"c={c}: {cells[kind, c].client_cpu:4.0%} / {cells[kind, c].server_cpu_max:4.0%}"
            for c in concs
        ]
        print(f"  {kind:<8} " + "   ".join(parts))
    print("client CPU per request, ms (median share of a core / median requests/s):")
    for kind in kinds:
        parts = [
            f"c={c}: {1000 * cells[kind, c].client_cpu / cells[kind, c].median_rps:.3f}"
            for c in concs
        ]
        print(f"  {kind:<8} " + "   ".join(parts))
    print(f"\n(sync32 in flight is capped at {SYNC_THREADS}; total {wall:.0f} s)")
    if not HAS_SNIFFIO:
        print(
            "note: sniffio is not installed, so httpcore (the default transport) retries a\n"
            "      failed 'import sniffio' on every lock it sets up -- a sys.path scan per\n"
            "      request; install sniffio to see the default transport at its best."
        )

    if args.json:
        out = {
            "config": {
                "latency_ms": args.latency_ms,
                "requests": args.requests,
                "warmup": args.warmup,
                "repeats": args.repeats,
                "concurrency": concs,
                "sync_threads": SYNC_THREADS,
            },
            "environment": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "httpx": metadata.version("httpx"),
                "httpx_aiohttp": metadata.version("httpx-aiohttp"),
                "aiohttp": metadata.version("aiohttp"),
                "sniffio_installed": HAS_SNIFFIO,
            },
            "transports": {k: TRANSPORTS[k] for k in kinds},
            "results": [asdict(cell) for cell in cells.values()],
            "wall_seconds": wall,
        }
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
