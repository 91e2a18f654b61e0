"""Tests marked ``last`` run after all others, by their mark, not their path.

The log scan (tests/zz_logs) used to rely on sorting last by its name; the
hook in tests/conftest.py now moves every ``last`` test to the end. This runs
pytest's collection in a child process with a ``last`` test in a directory
named to sort first, everything given in the "wrong" order.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_tests_marked_last_are_moved_to_the_end_whatever_their_path(tmp_path: Path) -> None:
    early = tmp_path / "aa_logs" / "test_scan.py"
    early.parent.mkdir()
    early.write_text(
        "import pytest\n\npytestmark = pytest.mark.last\n\n\ndef test_scan() -> None:\n    pass\n",
        encoding="utf-8",
    )
    given = [
        str(early),
        "tests/zz_logs/test_logs_hold_no_secrets.py::test_the_scanner_finds_what_it_looks_for",
        "tests/test_layers.py::test_every_module_has_a_layer",
        "tests/test_layers.py::test_cycles_are_reported_as_chains",
    ]
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    pinned = ["--rootdir", str(REPO), "-c", str(REPO / "pyproject.toml")]
    run = subprocess.run(
        [*command, *pinned, *given],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    collected = [line for line in run.stdout.splitlines() if "::" in line]
    assert [line.rsplit("::", 1)[1] for line in collected] == [
        "test_every_module_has_a_layer",
        "test_cycles_are_reported_as_chains",
        "test_scan",  # the ``last`` ones keep the order they were given in
        "test_the_scanner_finds_what_it_looks_for",
    ]
