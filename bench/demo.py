"""`smsq demo` on this tree and on a previous commit, alternated, in one run.

Issue 12 asks the demo, which is what a newcomer sees, to show the design:
OTPs never wait behind the campaign (p99 <= 300 ms over at least 50), its
bucket kept busy, (nearly) every message delivered by the end. This runs
``python -m smsq.demo`` (the embedded default: one process, SQLite,
in-process Redis and broker) ``--rounds`` times on each tree, previous first
in odd rounds and current first in even ones, with the same options, and
prints per run and as medians: OTP p50/p99, campaign delivered, demo
duration, and (current tree only: the report has it since issue 12) the
panel bucket's weakest and median 5-s window.

    .venv/bin/python bench/demo.py --previous f46cab4 --rounds 3      # ~8 min
    .venv/bin/python bench/demo.py --previous f46cab4 --rounds 1 -- --raised-rate 400

Options after ``--`` go to ``smsq demo`` on both trees (the default
``--otps 50``, so the previous tree, whose default was 5, sends as many).
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.against_previous import checkout

ROOT = Path(__file__).resolve().parent.parent
FIGURES: tuple[tuple[str, Callable[[dict[str, Any]], Any]], ...] = (
    ("otp_p50_ms", lambda r: r["otp"]["latency_ms_p50"]),
    ("otp_p99_ms", lambda r: r["otp"]["latency_ms_p99"]),
    ("otps", lambda r: r["otp"]["sent"]),
    ("delivered", lambda r: r["campaign"]["delivered"]),
    ("duration_s", lambda r: r["duration_s"]),
    ("bucket_weakest", lambda r: (r.get("bucket_use") or {}).get("weakest")),
    ("bucket_median", lambda r: (r.get("bucket_use") or {}).get("median")),
)


def run_demo(tree: Path, report: Path, options: list[str]) -> dict[str, Any]:
    """One demo on ``tree``'s code, in a scratch directory; its figures."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSQ_")}
    env["PYTHONPATH"] = str(tree)
    command = [sys.executable, "-m", "smsq.demo", "--report", str(report), *options]
    done = subprocess.run(
        command, cwd=report.parent, env=env, capture_output=True, text=True, timeout=600
    )
    if not report.exists():
        raise SystemExit(f"the demo on {tree} wrote no report:\n{done.stdout[-2000:]}")
    data = json.loads(report.read_text())
    return {name: pick(data) for name, pick in FIGURES}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--previous", required=True, help="git ref of the code to compare with")
    ap.add_argument("--rounds", type=int, default=3, help="demos on each tree")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("demo_options", nargs="*", help="after --: options for smsq demo")
    args = ap.parse_args()
    options = ["--otps", "50", *args.demo_options]

    runs: dict[str, list[dict[str, Any]]] = {"previous": [], "current": []}
    with tempfile.TemporaryDirectory(prefix="smsq-bench-demo-") as tmp:
        trees = {"previous": checkout(args.previous, Path(tmp) / "previous"), "current": ROOT}
        for round_ in range(args.rounds):
            order = ["previous", "current"] if round_ % 2 == 0 else ["current", "previous"]
            for label in order:
                scratch = Path(tmp) / f"{label}-{round_}"
                scratch.mkdir()
                figures = run_demo(trees[label], scratch / "report.json", options)
                runs[label].append(figures)
                print(f"round {round_ + 1} {label:>8}: {json.dumps(figures)}", flush=True)
                if args.json:  # kept as it grows
                    args.json.write_text(json.dumps({"partial": runs}, indent=2))

    print(f"\n{'figure':<16} {'previous (runs), median':>40} {'current (runs), median':>40}")
    result: dict[str, Any] = {"previous": args.previous, "options": options, "figures": {}}
    for name, _ in FIGURES:
        row = {}
        cells = []
        for label in ("previous", "current"):
            values = [r[name] for r in runs[label] if r[name] is not None]
            median = statistics.median(values) if values else None
            row[label] = {"runs": values, "median": median}
            shown = " / ".join(f"{v:g}" for v in values) or "-"
            cells.append(f"{shown} ({median:g})" if median is not None else shown)
        result["figures"][name] = row
        print(f"{name:<16} {cells[0]:>40} {cells[1]:>40}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
