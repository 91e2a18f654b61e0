"""What marking requests on the wire costs a worker (``worker.owners``).

Before each request group goes out, a worker records its message ids in Redis
(``on_wire.lua``, one round trip per group) and drops the set once the batch's
outcomes are stored (one ``DEL`` per batch). This measures that against what
the same path already did per group before (``main``): one token-bucket
acquire (``token_bucket.lua``). Client CPU (``time.process_time``) and wall
time per group, and per message at the given group size, against a private
``redis-server`` it starts (so ``INFO commandstats`` gives Redis's own time
per call without other clients' commands mixed in). Beside them, the two
calls the circuit breaker (``worker.provider_health``) makes per request
group: ``gate()`` before it and ``record()`` of its answers after it.

    .venv/bin/python bench/on_wire.py                         # groups of 1, 100, 500
    .venv/bin/python bench/on_wire.py --groups 20000 --sizes 1,100,500 --json on_wire.json

Group sizes: 100 is a panelsms group (``SMSQ_SEND_CONCURRENCY`` requests),
500 a brand request (``max_numbers``), 1 an OTP.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import free_port
from providers.base import Accepted
from worker.owners import Owner
from worker.provider_health import ProviderHealth
from worker.throttle import TokenBucket


def measure(run: Callable[[int], None], groups: int) -> tuple[float, float]:
    """(client CPU µs, wall µs) per call of ``run``."""
    for i in range(min(200, groups)):  # warm-up: scripts loaded, connection open
        run(i)
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(groups):
        run(i)
    return (
        (time.process_time() - cpu) / groups * 1e6,
        (time.perf_counter() - wall) / groups * 1e6,
    )


def server_usec(client: redis.Redis, command: str) -> float:
    stats = client.info("commandstats").get(f"cmdstat_{command}", {})
    return float(stats.get("usec_per_call", 0.0))


def measure_size(
    client: redis.Redis,
    bucket: TokenBucket,
    owner: Owner,
    health: ProviderHealth,
    size: int,
    groups: int,
) -> dict[str, Any]:
    ids = [str(uuid.uuid4()) for _ in range(size)]
    tokens = [owner.token() for _ in range(groups + 200)]
    client.config_resetstat()  # a private server: only our calls are counted
    before_cpu, before_wall = measure(lambda _i: bucket.acquire(size), groups)
    acquire_server = server_usec(client, "evalsha")
    client.config_resetstat()
    mark_cpu, mark_wall = measure(lambda i: owner.mark(tokens[i], ids) and None, groups)
    mark_server = server_usec(client, "evalsha")
    forget_cpu, _ = measure(lambda i: owner.forget(tokens[i]), groups)
    answers = [Accepted(i, i) for i in ids]
    breaker_cpu, breaker_wall = measure(
        lambda _i: health.gate() and health.record(answers) and None, groups
    )
    return {
        "group_size": size,
        "main_acquire_cpu_us": round(before_cpu, 1),
        "main_acquire_wall_us": round(before_wall, 1),
        "mark_cpu_us": round(mark_cpu, 1),
        "mark_wall_us": round(mark_wall, 1),
        "forget_cpu_us": round(forget_cpu, 1),
        "mark_cpu_us_per_message": round(mark_cpu / size, 2),
        "redis_usec_per_acquire": acquire_server,
        "redis_usec_per_mark": mark_server,
        "breaker_cpu_us": round(breaker_cpu, 1),
        "breaker_wall_us": round(breaker_wall, 1),
        "breaker_cpu_us_per_message": round(breaker_cpu / size, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--sizes", default="1,100,500")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(50):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.1)
    bucket = TokenBucket(client, "bench", rate=1e9, burst=10**9)
    owner = Owner(client, ttl=60, marks_ttl=1080)
    assert owner.beat()
    health = ProviderHealth(client, "bench")
    rows: list[dict[str, Any]] = []
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            rows.append(measure_size(client, bucket, owner, health, size, args.groups))
    finally:
        client.close()
        server.terminate()
        server.wait(10)
    print(
        "| group size | main: acquire CPU µs (wall) | + mark CPU µs (wall) | mark CPU µs/message "
        "| Redis µs per acquire / mark | breaker gate+record CPU µs (wall) | per message |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['group_size']} | {r['main_acquire_cpu_us']} ({r['main_acquire_wall_us']}) "
            f"| {r['mark_cpu_us']} ({r['mark_wall_us']}) | {r['mark_cpu_us_per_message']} "
            f"| {r['redis_usec_per_acquire']} / {r['redis_usec_per_mark']} "
            f"| {r['breaker_cpu_us']} ({r['breaker_wall_us']}) "
            f"| {r['breaker_cpu_us_per_message']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
