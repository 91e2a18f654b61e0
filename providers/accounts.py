"""Provider accounts: one table of the providers file each.

An account names an adapter (``panelsms`` or ``brand``), where it lives, its
credentials (``SecretStr``: never shown in logs, reprs or errors) and the
throttle it is allowed (``rate`` segments per second, ``burst`` capacity).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr


class _Account(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""  # filled from the table name: [providers.<name>]
    url: HttpUrl
    rate: float = Field(default=100, gt=0, description="segments per second")
    burst: int = Field(default=100, ge=1, description="bucket capacity, in segments")
    timeout: float = Field(default=10.0, gt=0, description="seconds to wait for an answer")
    dlr: bool = True  # ask for delivery reports


class PanelSmsAccount(_Account):
    adapter: Literal["panelsms"]
    user: str = Field(min_length=1)
    api_key: SecretStr
    sender: str | None = Field(default=None, max_length=16)
    response_type: Literal["json", "xml", "plain"] = "json"
    method: Literal["GET", "POST"] = "POST"

    @property
    def expects_reports(self) -> bool:
        """Silence from this account is evidence: it sends delivery reports."""
        return self.dlr


class BrandAccount(_Account):
    adapter: Literal["brand"]
    key: SecretStr
    brand_id: str = Field(min_length=1)
    callback_key: SecretStr | None = None
    max_numbers: int = Field(default=500, ge=1, le=10_000)

    @property
    def expects_reports(self) -> bool:
        """brand reports reach us only when they carry a callback key we accept."""
        return self.callback_key is not None


ProviderAccount = Annotated[PanelSmsAccount | BrandAccount, Field(discriminator="adapter")]
