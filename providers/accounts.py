"""Provider accounts: one table of the providers file each.

An account names its vendor (``adapter``: a name in
:data:`providers.registry.VENDORS`), where it lives, its credentials and the
throttle it is allowed (``rate`` segments per second, ``burst`` capacity).
What every account has is :class:`~providers.vendor.AccountBase`; each
vendor's own fields are in ``providers/<vendor>/account.py``.

:data:`ProviderAccount` reads any table: a union of the vendors' accounts told
apart by ``adapter``, built from the registry so a new vendor needs no line
here. For the type checker it is the common base (narrow with ``isinstance``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, TypeAlias, Union

from pydantic import Field

from providers.brand.account import BrandAccount
from providers.panelsms.account import PanelSmsAccount
from providers.registry import VENDORS
from providers.vendor import AccountBase

if TYPE_CHECKING:
    ProviderAccount: TypeAlias = AccountBase
else:
    ProviderAccount = Annotated[
        Union[tuple(vendor.account for vendor in VENDORS.values())],  # noqa: UP007
        Field(discriminator="adapter"),
    ]

VENDOR_NAMES = tuple(VENDORS)

__all__ = ["VENDOR_NAMES", "AccountBase", "BrandAccount", "PanelSmsAccount", "ProviderAccount"]
