"""smsq's settings: one class, read from ``SMSQ_*`` environment variables.

Like ``django.conf``, this module is a leaf every package may import; it
imports nothing of ours but the provider account schema. The names of the
environment variables are a public interface.

The providers file (``SMSQ_PROVIDERS_FILE``, TOML) holds one table per
provider account and, optionally, ``[[routes]]`` across them
(:mod:`providers.routes`, docs/routing.md). Without one, smsq uses two demo
accounts that talk to the simulator on 127.0.0.1:8025, so the embedded
default works on a bare machine.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from providers.accounts import VENDOR_NAMES, ProviderAccount
from providers.routes import Route, RouteError, check_route

SIMULATOR_URL = "http://127.0.0.1:8025"

# The demo accounts; the simulator knows these credentials (see
# providers.simulator.config). Any real deployment sets SMSQ_PROVIDERS_FILE.
DEFAULT_PROVIDERS: dict[str, dict[str, Any]] = {
    "panel": {
        "adapter": "panelsms",
        "url": f"{SIMULATOR_URL}/sendMtSms.php",
        "user": "demo@example.com",
        "api_key": "demo-panel-key",
        "sender": "SMSQ",
        "response_type": "json",
        "rate": 100,
        "burst": 100,
    },
    "brand": {
        "adapter": "brand",
        "url": f"{SIMULATOR_URL}/brand/send",
        "key": "demo-brand-key",
        "brand_id": "SMSQ",
        "callback_key": "demo-callback-key",
        "max_numbers": 500,
        "rate": 200,
        "burst": 200,
    },
}

_ACCOUNT = TypeAdapter[ProviderAccount](ProviderAccount)


class ProvidersFileError(ValueError):
    """The providers file cannot be used; the message names file, table and field."""


@dataclass(frozen=True, slots=True)
class ProvidersConfig:
    """What the providers file holds: the accounts and the routes, in file order."""

    accounts: dict[str, ProviderAccount]
    routes: dict[str, Route]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SMSQ_", extra="ignore")

    database_url: str = Field(default="sqlite:///./smsq.db", description="SQLAlchemy URL")
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="throttle store")
    broker_url: str | None = Field(default=None, description="Celery broker; the Redis URL")
    providers_file: Path | None = Field(default=None, description="TOML provider accounts")
    default_provider: str | None = Field(default=None, description="account used by default")
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="base URL at which providers reach our delivery-report receiver",
    )
    max_parts: int = Field(default=10, ge=1, le=255, description="longest text, in parts")
    timezone: str = Field(default="UTC", description="zone of 'Y-m-d H:i' times")

    # --- sending pipeline (seconds unless named otherwise)
    otp_validity: int = Field(default=600, gt=0, description="an OTP expires after this")
    default_validity: int = Field(default=86_400, gt=0, description="other messages expire")
    max_attempts: int = Field(default=10, ge=1, description="claims of one message, at most")
    retry_base: float = Field(default=1.0, gt=0, description="first backoff on codes 6/7")
    retry_cap: float = Field(default=60.0, gt=0, description="longest backoff on codes 6/7")
    throttle_decrease: float = Field(
        default=0.5, gt=0, lt=1, description="bucket rate factor applied on a code 7"
    )
    throttle_recovery: float = Field(
        default=0.1, gt=0, description="share of the full rate regained per second"
    )
    throttle_min_factor: float = Field(default=0.05, gt=0, le=1, description="slowest factor")
    sending_lease: int = Field(default=120, gt=0, description="a claim is owned this long")
    outcome_write_patience: float = Field(
        default=900,
        gt=0,
        description="seconds a worker keeps retrying to write what providers answered "
        "while the database is unreachable",
    )
    # --- provider circuit breaker (worker.provider_health, docs/operations.md)
    breaker_failures: int = Field(
        default=5, ge=1, description="consecutive transport failures that open a breaker"
    )
    breaker_error_share: float = Field(
        default=0.5, gt=0, le=1, description="share of bare HTTP 5xx answers that opens it"
    )
    breaker_min_answers: int = Field(
        default=20, ge=1, description="answers in the window before the 5xx share counts"
    )
    breaker_window: float = Field(default=10.0, gt=0, description="the 5xx window, seconds")
    breaker_probe_interval: float = Field(
        default=5.0, gt=0, description="one probe per this many seconds while open"
    )
    unknown_resend_after: int = Field(
        default=300, gt=0, description="resend an 'unknown' message once, if no report came"
    )
    dead_worker_resend_after: int = Field(
        default=20,
        gt=0,
        description="... sooner when its worker died mid-request (no report by then)",
    )
    schedule_horizon: int = Field(
        default=120, gt=0, description="hand scheduled sends to Celery this early (ETA)"
    )
    promote_interval: float = Field(default=1.0, gt=0, description="promoter period (beat)")
    sweep_interval: float = Field(default=15.0, gt=0, description="sweeper period (beat)")
    prune_after_days: int = Field(
        default=0,
        ge=0,
        description="the beat deletes messages finished this many days ago, with their "
        "events, outbox rows and campaigns (models/retention.py); 0: never",
    )
    prune_interval: float = Field(
        default=3600.0,
        ge=60,
        description="how often the beat prunes (at most 60 s of work each, so runs never overlap)",
    )
    owner_ttl: float = Field(
        default=10.0,
        ge=1,
        description="a worker process unheard of this long is dead: its claimed rows "
        "are recovered (heartbeat every quarter of it)",
    )
    recover_interval: float = Field(
        default=5.0, gt=0, description="dead workers' rows recovery period (beat)"
    )
    requeue_after: int = Field(
        default=60, gt=0, description="re-enqueue 'queued' rows untouched this long"
    )
    ingest_stall_after: int = Field(
        default=60,
        ge=10,
        description="cancel a campaign whose upload has not been heard from this long "
        "(its ingesting process died; the upload touches it every 5 s)",
    )
    visibility_timeout: int = Field(
        default=3600, gt=0, description="Redis broker: redeliver unacked tasks after this"
    )
    batch_size: int = Field(default=500, ge=1, le=10_000, description="messages per task")
    send_concurrency: int = Field(default=100, ge=1, description="requests in flight per worker")
    otp_reserve: float = Field(
        default=0.1,
        ge=0,
        le=10,
        description="seconds of each account's rate its bucket keeps for OTPs: the other "
        "lanes never take those tokens (at least 1, at most half the burst; 0: no reserve)",
    )
    fill_wait: float = Field(
        default=1.0,
        ge=0,
        le=5,
        description="campaign lane, multi-number accounts (brand): seconds of the bucket's rate "
        "a request may wait to be full rather than go out with what the bucket holds (0: never)",
    )

    # --- HTTP API
    api_rate_limit: int = Field(
        default=100, ge=1, description="requests per second per API key (a key may override)"
    )
    api_key_cache_seconds: float = Field(
        default=1.0, ge=0, description="a checked API key is trusted this long (revocation lag)"
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="largest JSON body")
    max_upload_bytes: int = Field(
        default=1_073_741_824, ge=1024, description="largest CSV upload (streamed, not held)"
    )
    max_recipients: int = Field(default=1000, ge=1, description="numbers in one POST /v1/messages")
    idempotency_ttl: int = Field(
        default=86_400, gt=0, description="an Idempotency-Key is remembered this long"
    )

    # --- operations
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Prometheus /metrics of a worker (main process) on this port; unset: none",
    )

    # --- logs (smsq.core.logs)
    log_json: bool = Field(default=False, description="JSON log lines instead of key=value")
    log_level: str | None = Field(
        default=None, description="log level; unset: INFO (services), WARNING (commands)"
    )

    # --- status webhooks to customers
    webhook_secret: SecretStr | None = Field(
        default=None, description="signs webhooks of messages sent with the Python API"
    )
    webhook_allow_http: bool = Field(
        default=False, description="allow http:// callback URLs (local development only)"
    )
    webhook_allow_private: bool = Field(
        default=False, description="allow private/loopback targets (local development only)"
    )
    webhook_timeout: float = Field(default=10.0, gt=0, description="one webhook request")
    webhook_retry_for: int = Field(
        default=86_400, gt=0, description="retry a failing webhook this long"
    )

    @field_validator("log_json", mode="before")
    @classmethod
    def _log_json_unless_off(cls, value: Any) -> Any:
        # Any value but empty, 0 and false turns JSON on (as it always has).
        if isinstance(value, str):
            return value.strip().lower() not in ("", "0", "false")
        return value

    @field_validator("public_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _eta_within_visibility(self) -> Settings:
        # A Redis-broker task whose ETA is further away than the visibility
        # timeout is redelivered again and again; our longest ETA is the
        # scheduling horizon plus the longest retry countdown.
        longest_eta = self.schedule_horizon + self.retry_cap
        if longest_eta >= self.visibility_timeout:
            raise ValueError(
                f"SMSQ_SCHEDULE_HORIZON + SMSQ_RETRY_CAP ({longest_eta:g} s) must be shorter "
                f"than SMSQ_VISIBILITY_TIMEOUT ({self.visibility_timeout} s)"
            )
        return self

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    @cached_property
    def providers_config(self) -> ProvidersConfig:
        if self.providers_file is None:
            accounts = parse_providers(DEFAULT_PROVIDERS, source="built-in demo providers")
            return ProvidersConfig(accounts, {})
        return load_providers_config(self.providers_file)

    @property
    def providers(self) -> dict[str, ProviderAccount]:
        """The provider accounts, by name, in file order."""
        return self.providers_config.accounts

    @property
    def routes(self) -> dict[str, Route]:
        """The routes, by name, in file order (the first match wins); empty: none."""
        return self.providers_config.routes

    @property
    def default_provider_name(self) -> str:
        name = self.default_provider or next(iter(self.providers))
        if name not in self.providers:
            known = ", ".join(sorted(self.providers))
            raise ProvidersFileError(
                f"SMSQ_DEFAULT_PROVIDER: no provider named {name!r} (known: {known})"
            )
        return name


def load_providers_file(path: Path) -> dict[str, ProviderAccount]:
    """The accounts of the providers file at ``path`` (its routes checked too)."""
    return load_providers_config(path).accounts


def load_providers_config(path: Path) -> ProvidersConfig:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProvidersFileError(f"{path}: file not found (SMSQ_PROVIDERS_FILE)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProvidersFileError(f"{path}: not valid TOML: {exc}") from None
    tables = data.get("providers")
    if not isinstance(tables, dict) or not tables:
        raise ProvidersFileError(f"{path}: no [providers.<name>] table")
    accounts = parse_providers(tables, source=str(path))
    routes = parse_routes(data.get("routes", []), accounts, source=str(path))
    return ProvidersConfig(accounts, routes)


def parse_providers(tables: dict[str, Any], *, source: str) -> dict[str, ProviderAccount]:
    accounts: dict[str, ProviderAccount] = {}
    for name, table in tables.items():
        where = f"{source}: [providers.{name}]"
        if not isinstance(table, dict):
            raise ProvidersFileError(f"{where}: must be a table")
        try:
            account = _ACCOUNT.validate_python({**table, "name": name})
        except ValidationError as exc:
            raise ProvidersFileError(f"{where}: {_describe(exc)}") from None
        accounts[name] = account
    return accounts


def parse_routes(
    tables: Any, accounts: dict[str, ProviderAccount], *, source: str
) -> dict[str, Route]:
    """The ``[[routes]]`` tables, checked against ``accounts`` and each other."""
    if not isinstance(tables, list):
        raise ProvidersFileError(f"{source}: routes must be [[routes]] tables (an array)")
    routes: dict[str, Route] = {}
    for number, table in enumerate(tables, 1):
        name = table.get("name") if isinstance(table, dict) else None
        shown = f" ({name!r})" if isinstance(name, str) else ""
        where = f"{source}: [[routes]] #{number}{shown}"
        if not isinstance(table, dict):
            raise ProvidersFileError(f"{where}: must be a table")
        try:
            route = Route.model_validate(table)
            check_route(route, accounts, taken=routes.keys())
        except ValidationError as exc:
            raise ProvidersFileError(f"{where}: {_describe(exc)}") from None
        except RouteError as exc:
            raise ProvidersFileError(f"{where}: {exc}") from None
        routes[route.name] = route
    return routes


def _describe(exc: ValidationError) -> str:
    """Field and reason for each problem, never the value (it may be a secret)."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = [str(p) for p in err["loc"] if p not in VENDOR_NAMES]
        field = ".".join(loc) or "adapter"
        parts.append(f"field {field!r}: {err['msg']}")
    return "; ".join(parts)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once. Tests call ``get_settings.cache_clear()``."""
    return Settings()
