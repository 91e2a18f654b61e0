"""From a provider account to its adapter."""

from __future__ import annotations

from providers.accounts import BrandAccount, PanelSmsAccount, ProviderAccount
from providers.base import Adapter
from providers.brand import BrandAdapter
from providers.panelsms import PanelSmsAdapter


def make_adapter(account: ProviderAccount, *, public_url: str, max_parts: int = 10) -> Adapter:
    if isinstance(account, PanelSmsAccount):
        return PanelSmsAdapter(account, public_url=public_url, max_parts=max_parts)
    if isinstance(account, BrandAccount):
        return BrandAdapter(account)
    raise TypeError(f"no adapter for {type(account).__name__}")  # pragma: no cover
