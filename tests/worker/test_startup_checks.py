"""A worker refuses a setup that loses work, warns on one that is merely slow to recover.

The eviction and persistence checks read ``CONFIG GET``: fakeredis has no
CONFIG command, which is exactly what a managed Redis looks like (warn, go on).
The real-Redis cases change server-wide settings, so each restores them at once.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import fakeredis
import pytest
import redis

from smsq.core.settings import Settings
from worker.startup_checks import (
    StartupCheckFailed,
    check_eta_within_visibility,
    check_eviction_policy,
    check_persistence,
    check_redis,
    check_worker_setup,
)

REPO = Path(__file__).resolve().parents[2]


# --- ETA versus visibility timeout -----------------------------------------------------


def test_default_settings_and_the_apps_transport_options_pass() -> None:
    from worker.app import make_celery

    app = make_celery(Settings())
    check_eta_within_visibility(Settings(), app.conf.broker_transport_options)


def test_settings_letting_an_eta_outlive_the_visibility_timeout_are_refused() -> None:
    # Settings refuses these values at load; the explicit check must too.
    settings = Settings.model_construct(schedule_horizon=3500, retry_cap=200.0)
    with pytest.raises(StartupCheckFailed) as refused:
        check_eta_within_visibility(settings, {"visibility_timeout": 3600})
    message = str(refused.value)
    for setting in ("SMSQ_SCHEDULE_HORIZON", "SMSQ_RETRY_CAP", "SMSQ_VISIBILITY_TIMEOUT"):
        assert setting in message


def test_a_shorter_visibility_timeout_on_the_celery_app_is_refused() -> None:
    with pytest.raises(StartupCheckFailed, match="broker_transport_options visibility_timeout"):
        check_eta_within_visibility(Settings(), {"visibility_timeout": 100})


def test_without_a_transport_option_kombus_default_applies() -> None:
    # SMSQ_VISIBILITY_TIMEOUT allows it, but the app does not pass it on:
    # kombu's default (1 h) is what the broker actually uses.
    settings = Settings(visibility_timeout=7200, schedule_horizon=3590)
    with pytest.raises(StartupCheckFailed, match="3600"):
        check_eta_within_visibility(settings, {})


# --- Redis configuration -------------------------------------------------------------------


def test_a_redis_without_config_is_warned_about_not_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    client = fakeredis.FakeRedis()  # like ElastiCache: CONFIG is not a command
    check_redis(client, role="store")
    assert check_persistence(client, role="store") is None
    assert "redis_config_unreadable" in caplog.text


def test_an_unreachable_redis_is_warned_about_not_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    settings = Settings(redis_url="redis://127.0.0.1:1/0")  # nothing listens on port 1
    check_worker_setup(settings, broker_url="memory://", broker_transport_options=None)
    assert "redis_unchecked" in caplog.text


def test_a_redis_with_noeviction_passes(redis_client: redis.Redis) -> None:
    # fakeredis: CONFIG unreadable; real Redis: our test server runs noeviction.
    check_redis(redis_client, role="store")


@pytest.fixture
def real_redis(real_redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(real_redis_url, decode_responses=True)
    saved = (
        client.config_get("maxmemory-policy")
        | client.config_get("save")
        | client.config_get("appendonly")
    )
    yield client
    client.config_set("maxmemory-policy", saved["maxmemory-policy"])
    client.config_set("save", saved["save"])
    client.config_set("appendonly", saved["appendonly"])
    client.close()


@pytest.mark.integration
def test_a_redis_that_may_evict_is_refused(real_redis: redis.Redis) -> None:
    real_redis.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with pytest.raises(StartupCheckFailed) as refused:
            check_eviction_policy(real_redis, role="broker")
    finally:
        real_redis.config_set("maxmemory-policy", "noeviction")
    assert "allkeys-lru" in str(refused.value)
    assert "maxmemory-policy noeviction" in str(refused.value)


@pytest.mark.integration
def test_a_redis_without_persistence_is_warned_about(
    real_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    # The test Redis only: the fixture restores both settings afterwards.
    real_redis.config_set("appendonly", "no")
    real_redis.config_set("save", "")
    assert check_persistence(real_redis, role="broker") is False
    assert "redis_without_persistence" in caplog.text

    real_redis.config_set("save", "3600 1")
    assert check_persistence(real_redis, role="broker") is True


# --- in the worker ---------------------------------------------------------------------


def test_the_worker_init_hook_exits_with_the_reason() -> None:
    from worker.app import make_worker

    settings = Settings(broker_url="memory://", visibility_timeout=7200, schedule_horizon=3590)
    worker = make_worker(settings)
    try:
        # The app passes on no visibility timeout: kombu's default of 3600 s applies.
        worker.celery.conf.broker_transport_options = {}
        with pytest.raises(SystemExit) as exited:
            worker.refuse_unsafe_setup(sender=SimpleNamespace(app=worker.celery))
    finally:
        worker.disconnect()
    assert "smsq worker refused to start" in str(exited.value.code)
    assert "visibility_timeout" in str(exited.value.code)


def test_the_hook_leaves_other_celery_apps_alone() -> None:
    from worker.app import make_worker

    worker = make_worker(Settings(broker_url="memory://"))
    try:
        conf = SimpleNamespace(
            broker_url="memory://", broker_transport_options={"visibility_timeout": 1}
        )
        other = SimpleNamespace(main="smsq", conf=conf)
        worker.refuse_unsafe_setup(sender=SimpleNamespace(app=other))
    finally:
        worker.disconnect()


def test_a_memory_broker_needs_no_redis_check() -> None:
    settings = Settings(redis_url="memory://")
    check_worker_setup(settings, broker_url="memory://", broker_transport_options=None)


@pytest.mark.integration
def test_smsq_worker_refuses_to_start_on_an_evicting_redis(
    real_redis: redis.Redis, real_redis_url: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "SMSQ_REDIS_URL": real_redis_url,
        "SMSQ_BROKER_URL": real_redis_url,
        "SMSQ_DATABASE_URL": f"sqlite:///{tmp_path / 'smsq.db'}",
    }
    smsq = [sys.executable, "-m", "smsq.cli", "worker", "--queues", "otp", "--concurrency", "1"]
    real_redis.config_set("maxmemory-policy", "volatile-lru")
    try:
        done = subprocess.run(
            smsq, env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        real_redis.config_set("maxmemory-policy", "noeviction")
    assert done.returncode == 1, done.stderr
    assert "smsq worker refused to start" in done.stderr
    assert "maxmemory-policy noeviction" in done.stderr
