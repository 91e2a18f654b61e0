"""Who is calling: ``Authorization: Bearer <API key>``, and the rate limit.

Routes take ``client: CurrentClient`` and pass ``client_id=client.id`` to the
producer. Answers:

- no key, a malformed or unknown key: 401 ``unauthorized`` with
  ``WWW-Authenticate: Bearer``;
- a revoked key: 403 ``key_revoked``;
- over the key's rate: 429 ``rate_limited`` with ``Retry-After``
  (:mod:`producer.http.request_rate`).

A successful check is cached for ``SMSQ_API_KEY_CACHE_SECONDS`` (default 1 s)
per presented key, keyed by its SHA-256 (never the key itself), so the hot
path does not read the database on every request. **Revoking a key takes
effect within that time** in each API process. Failures are not cached
(a key created a moment ago works at once).

The key is never logged; only its prefix (the part ``smsq keys list`` shows).
The client found for a request is kept in the request's state, so the
idempotency middleware and the route check and count a request once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends, FastAPI, Request

from producer.http.deps import Database, app_redis
from producer.http.errors import ApiError
from producer.http.request_rate import RateLimiter
from producer.keys import KeyState, hash_key, key_prefix, verify_key
from smsq.core.settings import Settings

log = structlog.get_logger("smsq.http")

STATE_CLIENT = "smsq_client"  # request.state attribute holding the ApiClient
_BEARER = "bearer"


@dataclass(frozen=True)
class ApiClient:
    """The API key a request was made with (no secret in it)."""

    id: str
    name: str
    rate_limit: int | None
    webhook_url: str | None


class KeyCache:
    """Successful key checks, by SHA-256 of the key, for a short time."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, ApiClient]] = {}

    def get(self, digest: str) -> ApiClient | None:
        if self.seconds <= 0:
            return None
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                del self._entries[digest]
                return None
            return entry[1]

    def put(self, digest: str, client: ApiClient) -> None:
        if self.seconds <= 0:
            return
        with self._lock:
            if len(self._entries) > 10_000:  # keys are few; this only bounds abuse
                self._entries.clear()
            self._entries[digest] = (self._clock() + self.seconds, client)


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def bearer_key(authorization: str | None) -> str:
    """The key of an ``Authorization: Bearer`` header, else 401."""
    if not authorization:
        raise _unauthorized("an API key is required: Authorization: Bearer <key>")
    scheme, _, key = authorization.strip().partition(" ")
    if scheme.lower() != _BEARER or not key.strip():
        raise _unauthorized("use Authorization: Bearer <key>")
    return key.strip()


def _key_cache(app: FastAPI) -> KeyCache:
    cache: KeyCache | None = getattr(app.state, "key_cache", None)
    if cache is None:
        settings: Settings = app.state.settings
        cache = KeyCache(settings.api_key_cache_seconds)
        app.state.key_cache = cache
    return cache


def _rate_limiter(app: FastAPI) -> RateLimiter:
    limiter: RateLimiter | None = getattr(app.state, "rate_limiter", None)
    if limiter is None:
        limiter = RateLimiter(lambda: app_redis(app))
        app.state.rate_limiter = limiter
    return limiter


def authenticate(app: FastAPI, authorization: str | None) -> ApiClient:
    """The client of an ``Authorization`` header (cached), or an ApiError 401/403."""
    return authenticate_key(app, bearer_key(authorization))


def authenticate_key(app: FastAPI, key: str) -> ApiClient:
    """The client of a presented key (cached), or an ApiError 401/403."""
    digest = hash_key(key)
    cache = _key_cache(app)
    client = cache.get(digest)
    if client is not None:
        return client
    database: Database = app.state.database
    with database.session_factory() as session:
        check = verify_key(session, key)
    if check.state is KeyState.REVOKED:
        log.info("auth.revoked_key", prefix=key_prefix(key))
        raise ApiError(403, "key_revoked", "this API key was revoked")
    if check.key is None:
        log.info("auth.unknown_key", prefix=key_prefix(key))
        raise _unauthorized("unknown API key")
    row = check.key
    client = ApiClient(
        id=row.id, name=row.name, rate_limit=row.rate_limit, webhook_url=row.webhook_url
    )
    cache.put(digest, client)
    return client


def check_rate(app: FastAPI, client: ApiClient) -> None:
    """Count one request of ``client``; 429 with ``Retry-After`` over its limit."""
    settings: Settings = app.state.settings
    limit = client.rate_limit or settings.api_rate_limit
    retry_after = _rate_limiter(app).hit(client.id, limit)
    if retry_after is not None:
        raise ApiError(
            429,
            "rate_limited",
            f"more than {limit} requests per second with this API key",
            headers={"Retry-After": str(max(1, retry_after))},
        )


def client_for_request(
    app: FastAPI, state: dict[str, object], authorization: str | None
) -> ApiClient:
    """Authenticate and count a request once, remembering it in its state."""
    found = state.get(STATE_CLIENT)
    if isinstance(found, ApiClient):
        return found
    client = authenticate(app, authorization)
    check_rate(app, client)
    state[STATE_CLIENT] = client
    return client


def require_client(request: Request) -> ApiClient:
    """The dependency behind :data:`CurrentClient` (runs in the threadpool)."""
    state = request.scope.setdefault("state", {})
    return client_for_request(request.app, state, request.headers.get("authorization"))


CurrentClient = Annotated[ApiClient, Depends(require_client)]
