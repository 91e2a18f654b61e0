"""Importing the wiring does nothing: no connection, no thread, no environment write.

Each check runs in a fresh interpreter, so no module is already imported.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Refuses every outgoing connection and records it; then imports the modules,
# compares the environment and the threads with what was there before, and
# checks that no app was made, no signal hooked, no logging configured.
GUARD = """
import os, socket, sys, threading

attempts = []

def refuse(*args, **kwargs):
    attempts.append(repr(args[1:] or args))
    raise OSError("no connection at import")

socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
env_before = dict(os.environ)
threads_before = set(threading.enumerate())

for name in sys.argv[1:]:
    __import__(name)

assert not attempts, f"connections at import: {attempts}"
changed = {k for k in set(env_before) | set(os.environ) if env_before.get(k) != os.environ.get(k)}
assert not changed, f"environment written at import: {sorted(changed)}"
started = set(threading.enumerate()) - threads_before
assert not started, f"threads started at import: {started}"
# Nor is anything built: no Celery app, no signal handler, no logging setup.
from celery import _state, signals
apps = list(_state._get_active_apps())
assert not apps, f"Celery apps made at import: {apps}"
hooked = [n for n in ("worker_init", "worker_process_init") if getattr(signals, n).receivers]
assert not hooked, f"signal handlers connected at import: {hooked}"
import logging
assert not logging.getLogger().handlers, "logging configured at import"
print("clean")
"""


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "modules",
    [
        ["worker.app"],
        ["producer.api"],
        ["smsq.api_app"],
        ["worker.app", "worker.tasks", "worker.webhooks.tasks", "producer.api", "smsq.demo"],
    ],
)
def test_importing_opens_no_connection_starts_no_thread_writes_no_environment(
    modules: list[str],
) -> None:
    done = run_python(GUARD, *modules)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "clean"


def test_celery_finds_the_app_of_worker_app_and_builds_it_on_that_first_read() -> None:
    # What `celery -A worker.app worker` does (celery.app.utils.find_app).
    code = textwrap.dedent(
        """
        import worker.app
        assert "app" not in vars(worker.app), "built at import"
        from celery import Celery
        from celery.app.utils import find_app
        app = find_app("worker.app")
        assert isinstance(app, Celery), app
        assert find_app("worker.app") is app and worker.app.app is app
        from smsq.core.names import TASK_SEND, TASK_DELIVER_WEBHOOK
        assert TASK_SEND in app.tasks and TASK_DELIVER_WEBHOOK in app.tasks
        print("found")
        """
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "found"
