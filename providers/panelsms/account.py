"""A panelsms account: one ``[providers.<name>]`` table with ``adapter = "panelsms"``."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, SecretStr

from providers.vendor import AccountBase


class PanelSmsAccount(AccountBase):
    # senderId per message, and flash by its UDH (single-part texts).
    carries_flash: ClassVar[bool] = True
    carries_own_sender: ClassVar[bool] = True

    adapter: Literal["panelsms"]
    user: str = Field(min_length=1)
    api_key: SecretStr
    sender: str | None = Field(default=None, max_length=16)
    response_type: Literal["json", "xml", "plain"] = "json"
    method: Literal["GET", "POST"] = "POST"

    @property
    def default_sender(self) -> str | None:
        return self.sender
