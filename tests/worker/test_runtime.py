"""Per-thread runtimes (a thread pool, the in-process demo) and live bucket rates."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from providers.accounts import ProviderAccount
from smsq.settings import get_settings
from worker import runtime


@pytest.fixture(autouse=True)
def fresh_runtimes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(runtime, "_enqueue_factory", lambda: lambda ids, queue, countdown: None)
    monkeypatch.delenv("SMSQ_PROVIDERS_FILE", raising=False)
    get_settings.cache_clear()
    runtime.close_runtimes()
    yield
    runtime.close_runtimes()
    get_settings.cache_clear()


def test_each_thread_gets_its_own_runtime_and_close_runtimes_closes_them_all() -> None:
    here = runtime.get_runtime()
    assert runtime.get_runtime() is here
    seen: list[runtime.Runtime] = []
    thread = threading.Thread(target=lambda: seen.append(runtime.get_runtime()))
    thread.start()
    thread.join()
    assert seen[0] is not here

    runtime.close_runtimes()

    assert here.loop.is_closed() and seen[0].loop.is_closed()
    assert runtime.get_runtime() is not here  # a new one on the next use


def test_a_changed_rate_reaches_the_bucket_at_the_next_call() -> None:
    rt = runtime.get_runtime()
    assert rt.bucket("panel").rate == 100
    providers: dict[str, ProviderAccount] = rt.settings.providers
    providers["panel"] = providers["panel"].model_copy(update={"rate": 400, "burst": 400})
    bucket = rt.bucket("panel")
    assert (bucket.rate, bucket.burst) == (400, 400)
    assert rt.bucket("panel") is bucket  # unchanged account: the same bucket
