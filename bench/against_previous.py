"""Run the benchmarks of docs/performance.md on this tree and on a previous commit, in one run.

A refactoring must not cost speed: this checks out ``--previous`` (a git ref)
into a temporary directory and runs each benchmark alternately on both trees
(previous first in odd rounds, current first in even rounds, so a drift of the
machine's load is shared), one repeat per run, ``--rounds`` times. Both trees
run with this checkout's virtualenv, each with its own code first on
``PYTHONPATH``. It prints, per figure, the runs, the medians and the ratio
current / previous.

    .venv/bin/python bench/against_previous.py --previous 2342a24 --rounds 3
    .venv/bin/python bench/against_previous.py --previous main~5 --only api,ingest
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

Figures = dict[str, float]

# Files of bench/ taken from this tree for both runs: load generators that use
# no smsq code, or only interfaces unchanged since (api.py: models.tables and
# producer.keys.create_key), so both trees are driven and measured alike.
HARNESS_ONLY = ("bench/_endpoint.py", "bench/api.py")


def _throughput(data: dict[str, Any]) -> Figures:
    return {"throughput msg/s": data["smsq_rate_median"]}


def _ingest(data: dict[str, Any]) -> Figures:
    return {"ingest rows/s": data["smsq_rate_median"]}


def _api(data: dict[str, Any]) -> Figures:
    medians, cpu = data["medians"], data["server_cpu_ms_per_request"]
    return {
        "api /v1/messages req/s": medians["messages"],
        "api /dlr req/s": medians["dlr"],
        # Lower is better: the ratio of these is current / previous too.
        "api /v1/messages server CPU ms/req": cpu["messages"],
        "api /dlr server CPU ms/req": cpu["dlr"],
    }


def _transport(data: dict[str, Any]) -> Figures:
    return {
        f"transport {cell['transport']} c={cell['concurrency']} req/s": cell["median_rps"]
        for cell in data["results"]
    }


# name -> (arguments, figures read from its --json)
BENCHMARKS: dict[str, tuple[list[str], Callable[[dict[str, Any]], Figures]]] = {
    "throughput": (["--messages", "20000", "--baseline-messages", "300"], _throughput),
    "api": (["--requests", "5000"], _api),
    "ingest": (["--rows", "300000", "--baseline-rows", "2000"], _ingest),
    "transport": (["--requests", "1000", "--concurrency", "50"], _transport),
}


def checkout(ref: str, into: Path) -> Path:
    """The tree of ``ref`` (git archive: no .git, no .venv)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref],
        check=True,
        capture_output=True,
    ).stdout
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    for helper in HARNESS_ONLY:  # the same load generator for both trees
        (into / helper).write_bytes((ROOT / helper).read_bytes())
    return into


def run_once(tree: Path, name: str, out: Path) -> Figures:
    args, figures = BENCHMARKS[name]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, str(tree / "bench" / f"{name}.py"), *args, "--repeats", "1"]
    command += ["--json", str(out)]
    print(f"  {tree.name:>9}: {' '.join(command[1:])}", flush=True)
    subprocess.run(command, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    return figures(json.loads(out.read_text()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--previous", required=True, help="git ref of the code to compare with")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each benchmark on each tree")
    ap.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated benchmarks")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    with tempfile.TemporaryDirectory(prefix="smsq-previous-") as tmp:
        previous = checkout(args.previous, Path(tmp) / "previous")
        trees = {"previous": previous, "current": ROOT}
        runs: dict[str, dict[str, list[float]]] = {"previous": {}, "current": {}}
        for round_ in range(args.rounds):
            order = ["previous", "current"] if round_ % 2 == 0 else ["current", "previous"]
            for name in names:
                print(f"round {round_ + 1}, {name}", flush=True)
                for label in order:
                    figures = run_once(trees[label], name, Path(tmp) / f"{label}-{name}.json")
                    for figure, value in figures.items():
                        runs[label].setdefault(figure, []).append(value)
                    if args.json:  # kept as it grows: a long run that stops keeps its figures
                        args.json.write_text(json.dumps({"partial": runs}, indent=2))

    print(f"\n{'figure':<42} {'previous (runs)':>26} {'current (runs)':>26} {'ratio':>6}")
    result: dict[str, Any] = {"previous": args.previous, "rounds": args.rounds, "figures": {}}
    for figure, before in runs["previous"].items():
        after = runs["current"].get(figure, [])
        if not after:
            continue
        old, new = statistics.median(before), statistics.median(after)
        ratio = new / old if old else float("nan")
        result["figures"][figure] = {"previous": before, "current": after, "ratio": ratio}
        fmt = " / ".join
        print(
            f"{figure:<42} {fmt(f'{v:,.2f}' if v < 10 else f'{v:,.0f}' for v in before):>26} "
            f"{fmt(f'{v:,.2f}' if v < 10 else f'{v:,.0f}' for v in after):>26} {ratio:>6.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
