"""A panelsms account: one ``[providers.<name>]`` table with ``adapter = "panelsms"``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from providers.vendor import AccountBase


class PanelSmsAccount(AccountBase):
    adapter: Literal["panelsms"]
    user: str = Field(min_length=1)
    api_key: SecretStr
    sender: str | None = Field(default=None, max_length=16)
    response_type: Literal["json", "xml", "plain"] = "json"
    method: Literal["GET", "POST"] = "POST"
