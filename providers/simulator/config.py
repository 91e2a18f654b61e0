"""What the simulator accepts and which faults it injects.

One mutable :class:`SimConfig` per simulator. It is changed at runtime through
``POST /_config`` (a JSON object of the fields to change), so a benchmark can
turn on an outage or a rate limit in the middle of a run without restarting
anything. A patch is validated as a whole before any field changes, so a bad
patch leaves the running configuration untouched.

The defaults accept the demo accounts of ``smsq.core.settings.DEFAULT_PROVIDERS``,
inject no faults and deliver every message, so ``smsq demo`` works as is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import TypeAdapter, ValidationError

_RATIOS = ("delivered_ratio", "queue_full_ratio", "error_5xx_ratio", "hang_ratio")
_NON_NEGATIVE = ("dlr_delay", "dlr_jitter", "latency_ms", "jitter_ms", "retry_after")


@dataclass
class SimConfig:
    """Accounts, limits, delivery-report behaviour and fault injection."""

    # --- panelsms accounts: user -> apiKey; a disabled user answers code 1.
    panelsms_users: dict[str, str] = field(
        default_factory=lambda: {"demo@example.com": "demo-panel-key"}
    )
    disabled_users: set[str] = field(default_factory=set)
    # Where reports go when a request asks for confirmation without a
    # callbackUrl (the vendor's OTP example does that: an account-level URL).
    panelsms_callback_url: str | None = None

    # --- brand accounts: key -> brandID.
    brand_keys: dict[str, str] = field(default_factory=lambda: {"demo-brand-key": "SMSQ"})
    brand_max_numbers: int = 500
    brand_max_parts: int = 10
    brand_callback_url: str | None = "http://127.0.0.1:8000/dlr/brand"
    brand_callback_key: str = "demo-callback-key"

    # --- delivery reports.
    dlr_delay: float = 1.0  # seconds after acceptance (or after the scheduled time)
    dlr_jitter: float = 0.0  # plus up to this many seconds, uniformly
    delivered_ratio: float = 1.0  # the rest end as undelivered / statusID 2
    dlr_sent_first: bool = False  # a "sent" / statusID 0 report before the final one
    dlr_error_code: int = 11  # panelsms errorCode of an undelivered report

    # --- faults, checked after authentication in this order.
    outages: list[tuple[float, float]] = field(default_factory=list)  # [start, end) unix times
    hang_ratio: float = 0.0  # never answer
    error_5xx_ratio: float = 0.0  # HTTP 500
    rate_limit: int | None = None  # messages per clock second across the API; code 7
    queue_full_ratio: float = 0.0  # code 6
    retry_after: int = 1  # the Retry-After header of codes 6 and 7
    latency_ms: float = 0.0  # added to every API answer
    jitter_ms: float = 0.0  # latency varies by up to +/- this much

    # --- destinations, by prefix (compared without '+'): roaming ones are
    # accepted with code 3, barred ones refused with code 11.
    roaming_prefixes: tuple[str, ...] = ()
    barred_prefixes: tuple[str, ...] = ()
    # Messages the accounts may still send; each accepted one costs one, and a
    # request that needs more than is left answers code 9. None = unlimited.
    credit: int | None = None

    # Zone of the vendors' local times: brand sendTime and callback date, and a
    # panelsms scheduledDeliveryTime without an offset.
    timezone: str = "UTC"
    seed: int | None = None  # reproducible randomness when set

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be between 0 and 1"
            for name in _RATIOS
            if not 0 <= getattr(self, name) <= 1
        ]
        problems += [
            f"{name} must not be negative" for name in _NON_NEGATIVE if getattr(self, name) < 0
        ]
        if self.credit is not None and self.credit < 0:
            problems.append("credit must not be negative, or null for unlimited")
        if self.rate_limit is not None and self.rate_limit < 1:
            problems.append("rate_limit must be at least 1, or null for no limit")
        if self.brand_max_numbers < 1 or self.brand_max_parts < 1:
            problems.append("brand_max_numbers and brand_max_parts must be at least 1")
        problems += [f"outage {o!r}: start must precede end" for o in self.outages if o[0] >= o[1]]
        try:
            self.tzinfo  # noqa: B018 -- validates the zone name
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"timezone {self.timezone!r} is not a known zone")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def tzinfo(self) -> dt.tzinfo:
        return _zone(self.timezone)

    def in_outage(self, now: float) -> bool:
        return any(start <= now < end for start, end in self.outages)

    def roaming(self, number: str) -> bool:
        return _has_prefix(number, self.roaming_prefixes)

    def barred(self, number: str) -> bool:
        return _has_prefix(number, self.barred_prefixes)

    def patch(self, changes: dict[str, Any]) -> list[str]:
        """Apply ``changes`` (JSON values) all or nothing; return the names changed.

        Raises ValueError naming the unknown field or the invalid value.
        """
        hints = _field_types()
        unknown = sorted(set(changes) - set(hints))
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        coerced: dict[str, Any] = {}
        for name, value in changes.items():
            try:
                coerced[name] = _adapter(name).validate_python(value)
            except ValidationError as exc:
                reasons = "; ".join(err["msg"] for err in exc.errors(include_url=False))
                raise ValueError(f"{name}: {reasons}") from None
        checked = dataclasses.replace(self, **coerced)  # runs __post_init__
        for name in coerced:
            setattr(self, name, getattr(checked, name))
        return sorted(coerced)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: sets and tuples become lists."""
        data = dataclasses.asdict(self)
        data["disabled_users"] = sorted(self.disabled_users)
        data["roaming_prefixes"] = list(self.roaming_prefixes)
        data["barred_prefixes"] = list(self.barred_prefixes)
        data["outages"] = [list(window) for window in self.outages]
        return data


def _has_prefix(number: str, prefixes: tuple[str, ...]) -> bool:
    digits = number.removeprefix("+")
    return any(digits.startswith(prefix.removeprefix("+")) for prefix in prefixes)


@cache
def _zone(name: str) -> dt.tzinfo:
    # "UTC" without the tz database, so a bare container works.
    return dt.UTC if name.upper() in ("UTC", "Z") else ZoneInfo(name)


@cache
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(SimConfig)


@cache
def _adapter(name: str) -> TypeAdapter[Any]:
    return TypeAdapter(_field_types()[name])
