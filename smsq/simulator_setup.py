"""A simulator that accepts the configured provider accounts.

``smsq simulator`` and the demo serve the accounts of the providers file (or
the built-in demo accounts), so smsq's adapters and the simulator agree on
credentials without a second place to write them, and the brand callback goes
to our own receiver at ``SMSQ_PUBLIC_URL``.
"""

from __future__ import annotations

from typing import Any

from providers.accounts import BrandAccount, PanelSmsAccount
from providers.simulator import SimConfig
from smsq.core.settings import Settings


def simulator_config(settings: Settings, **overrides: Any) -> SimConfig:
    panel = [a for a in settings.providers.values() if isinstance(a, PanelSmsAccount)]
    brand = [a for a in settings.providers.values() if isinstance(a, BrandAccount)]
    values: dict[str, Any] = {
        "panelsms_users": {a.user: a.api_key.get_secret_value() for a in panel},
        "brand_keys": {a.key.get_secret_value(): a.brand_id for a in brand},
        "brand_max_numbers": max((a.max_numbers for a in brand), default=500),
        "brand_callback_url": f"{settings.public_url}/dlr/brand",
    }
    callback_keys = [a.callback_key for a in brand if a.callback_key is not None]
    if callback_keys:
        values["brand_callback_key"] = callback_keys[0].get_secret_value()
    values.update({k: v for k, v in overrides.items() if v is not None})
    return SimConfig(**values)
