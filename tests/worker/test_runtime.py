"""The process's runtime: one per process, a loop per thread, live bucket rates."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from providers.accounts import ProviderAccount
from smsq.core.settings import Settings
from worker.runtime import ProcessRuntime, Runtime, SendLoop


@pytest.fixture
def process_runtime(recording_publisher: Any) -> Iterator[ProcessRuntime]:
    made = ProcessRuntime(lambda: Runtime(Settings(providers_file=None), recording_publisher))
    yield made
    made.close()


def test_one_runtime_per_process_a_loop_per_thread_and_close_closes_them_all(
    process_runtime: ProcessRuntime,
) -> None:
    here = process_runtime.get()
    assert process_runtime.get() is here
    seen: list[tuple[Runtime, SendLoop]] = []

    def in_a_thread() -> None:
        rt = process_runtime.get()
        seen.append((rt, rt.send_loop()))

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert seen[0][0] is here  # the clients and caches are the process's
    assert seen[0][1] is not here.send_loop()  # the event loop is the thread's
    loop = here.send_loop()

    process_runtime.close()

    assert loop.loop.is_closed() and seen[0][1].loop.is_closed()
    assert process_runtime.get() is not here  # a new one on the next use


def test_after_a_fork_the_parents_runtime_is_forgotten_not_closed(
    process_runtime: ProcessRuntime,
) -> None:
    parent = process_runtime.get()
    loop = parent.send_loop()
    process_runtime.forget()
    assert process_runtime.get() is not parent
    assert not loop.loop.is_closed()  # the parent's to close
    parent.close()


def test_a_changed_rate_reaches_the_bucket_at_the_next_call(
    process_runtime: ProcessRuntime,
) -> None:
    rt = process_runtime.get()
    assert rt.bucket("panel").rate == 100
    providers: dict[str, ProviderAccount] = rt.settings.providers
    providers["panel"] = providers["panel"].model_copy(update={"rate": 400, "burst": 400})
    bucket = rt.bucket("panel")
    assert (bucket.rate, bucket.burst) == (400, 400)
    assert rt.bucket("panel") is bucket  # unchanged account: the same bucket
