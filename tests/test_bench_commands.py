"""Every benchmark in bench/ starts: its imports resolve and ``--help`` answers.

The benchmarks run outside the suite (minutes each, on the real stack), so a
moved helper broke one unnoticed once (bench/routing.py after a merge). This
catches that class of break in a second per script.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
# Modules that are not commands: shared parts (``_*.py``) and the baseline's
# Celery app (bench/naive_worker.py, loaded by ``celery -A``).
COMMANDS = sorted(
    p for p in BENCH.glob("*.py") if not p.name.startswith("_") and p.name != "naive_worker.py"
)


def test_there_are_benchmarks() -> None:
    assert {"throughput.py", "routing.py", "chaos.py", "big_table.py"} <= {p.name for p in COMMANDS}


@pytest.mark.parametrize("script", COMMANDS, ids=lambda p: p.name)
def test_a_benchmark_starts_and_explains_itself(script: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
