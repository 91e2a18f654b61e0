"""Checks a worker runs before it starts consuming: refuse a setup that loses work.

Two setups lose messages silently, so a worker refuses to start on them:

- a Redis whose ``maxmemory-policy`` is not ``noeviction``: under memory
  pressure Redis would evict queued tasks and token buckets without an error;
- an ETA that can outlive the broker's visibility timeout: the Redis transport
  redelivers an unacknowledged task after that timeout, so a task waiting for
  its ETA longer than that is delivered again and again. Our longest ETA is
  ``SMSQ_SCHEDULE_HORIZON + SMSQ_RETRY_CAP``. ``Settings`` already refuses
  such values at load; here we also compare against the transport option the
  Celery app actually carries, which a deployment may have overridden.

A Redis with neither AOF nor RDB snapshots only gets a warning: a restart
loses the queues, but the sweeper re-enqueues due work from the database (see
``smsq.core.names.BROKER_MARKER_KEY``), so it is slow rather than lossy.

Managed Redis services often forbid ``CONFIG``; then we warn and go on, since
their eviction and persistence are set in the provider's console.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis
import structlog
from redis.backoff import NoBackoff
from redis.retry import Retry

from smsq.core.settings import Settings

log = structlog.get_logger("smsq.startup")

REQUIRED_EVICTION_POLICY = "noeviction"
# What kombu's Redis transport uses when no visibility_timeout is configured.
KOMBU_DEFAULT_VISIBILITY_TIMEOUT = 3600
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
# A check must not hold a worker's start for long when Redis is not up yet.
CHECK_SOCKET_TIMEOUT = 2.0


class StartupCheckFailed(Exception):
    """The worker must not start; the message names the setting and the fix."""


def check_eviction_policy(client: redis.Redis, *, role: str) -> None:
    """Refuse a Redis that may evict keys (queued tasks, buckets) under memory pressure."""
    policy = _config_value(client, "maxmemory-policy", role=role)
    if policy is None or policy == REQUIRED_EVICTION_POLICY:
        return
    raise StartupCheckFailed(
        f"Redis ({role}) has maxmemory-policy {policy!r}: it may evict queued tasks and "
        f"token buckets. Set 'maxmemory-policy {REQUIRED_EVICTION_POLICY}' in redis.conf "
        f"(or run: CONFIG SET maxmemory-policy {REQUIRED_EVICTION_POLICY}; CONFIG REWRITE)."
    )


def check_persistence(client: redis.Redis, *, role: str) -> bool | None:
    """Warn when Redis keeps nothing on disk. True/False: persistent or not; None: unknown."""
    appendonly = _config_value(client, "appendonly", role=role)
    save = _config_value(client, "save", role=role)
    if appendonly is None or save is None:
        return None
    if appendonly == "yes" or save.strip():
        return True
    log.warning(
        "redis_without_persistence",
        redis=role,
        fix="set 'appendonly yes' and 'appendfsync everysec' in redis.conf",
        effect="a Redis restart loses queued tasks; the sweeper re-enqueues them from the DB",
    )
    return False


def check_eta_within_visibility(
    settings: Settings, broker_transport_options: Mapping[str, Any] | None
) -> None:
    """Refuse settings that let an ETA outlive the broker's visibility timeout."""
    longest_eta = settings.schedule_horizon + settings.retry_cap
    if longest_eta >= settings.visibility_timeout:
        raise StartupCheckFailed(
            f"SMSQ_SCHEDULE_HORIZON + SMSQ_RETRY_CAP ({longest_eta:g} s) must be shorter than "
            f"SMSQ_VISIBILITY_TIMEOUT ({settings.visibility_timeout} s), or tasks waiting for "
            "their ETA are redelivered again and again. Lower the first two or raise the last."
        )
    configured = (broker_transport_options or {}).get(
        "visibility_timeout", KOMBU_DEFAULT_VISIBILITY_TIMEOUT
    )
    if longest_eta >= float(configured):
        raise StartupCheckFailed(
            f"the Celery app's broker_transport_options visibility_timeout ({configured} s) "
            f"is not longer than SMSQ_SCHEDULE_HORIZON + SMSQ_RETRY_CAP ({longest_eta:g} s). "
            "Remove the override so SMSQ_VISIBILITY_TIMEOUT applies, or raise it."
        )


def check_redis(client: redis.Redis, *, role: str) -> None:
    """Eviction (refuse) and persistence (warn) of one Redis; unreachable: warn."""
    try:
        check_eviction_policy(client, role=role)
        check_persistence(client, role=role)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        # Celery retries the broker connection at start; Redis may come up later.
        log.warning("redis_unchecked", redis=role, reason=type(exc).__name__)


def check_worker_setup(
    settings: Settings,
    *,
    broker_url: str,
    broker_transport_options: Mapping[str, Any] | None,
) -> None:
    """Every check, on the throttle store and (when it is Redis) the broker.

    Raises :class:`StartupCheckFailed` on a setup the worker must not run on.
    """
    check_eta_within_visibility(settings, broker_transport_options)
    urls: dict[str, str] = {}
    if broker_url == settings.redis_url:
        urls["SMSQ_REDIS_URL: throttle store and broker"] = broker_url
    else:
        urls["SMSQ_REDIS_URL: throttle store"] = settings.redis_url
        urls["SMSQ_BROKER_URL: broker"] = broker_url
    for role, url in urls.items():
        if not url.startswith(REDIS_SCHEMES):
            continue
        client = redis.Redis.from_url(
            url,
            socket_timeout=CHECK_SOCKET_TIMEOUT,
            socket_connect_timeout=CHECK_SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 0),  # one try: an unreachable Redis is only a warning
        )
        try:
            check_redis(client, role=role)
        finally:
            client.close()


def _config_value(client: redis.Redis, name: str, *, role: str) -> str | None:
    """One ``CONFIG GET`` value, or None (with a warning) when CONFIG is not allowed."""
    try:
        reply = client.config_get(name)
    except redis.ResponseError as exc:
        # Managed Redis (ElastiCache, Memorystore, ...) renames or forbids CONFIG.
        log.warning(
            "redis_config_unreadable",
            redis=role,
            setting=name,
            reason=type(exc).__name__,
            fix=f"make sure {name} is set as docs/deploy.md says in the provider's console",
        )
        return None
    for key, value in reply.items():
        if _text(key) == name:
            return _text(value)
    return None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
