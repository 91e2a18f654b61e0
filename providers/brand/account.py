"""A brand account: one ``[providers.<name>]`` table with ``adapter = "brand"``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from providers.vendor import AccountBase


class BrandAccount(AccountBase):
    adapter: Literal["brand"]
    key: SecretStr
    brand_id: str = Field(min_length=1)
    callback_key: SecretStr | None = None
    max_numbers: int = Field(default=500, ge=1, le=10_000)

    @property
    def default_sender(self) -> str | None:
        """brand sends every message under its brandID (no per-message sender, no flash)."""
        return self.brand_id

    @property
    def expects_reports(self) -> bool:
        """brand reports reach us only when they carry a callback key we accept."""
        return self.callback_key is not None
