"""The vendors smsq can send through, one line each.

A vendor is a folder (``providers/<vendor>/``: protocol, account, adapter,
reports) and its :class:`~providers.vendor.Vendor` line in :data:`VENDORS`;
the providers file, the adapters and report texts all read this list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from providers.brand.vendor import BRAND
from providers.panelsms.vendor import PANELSMS
from providers.vendor import AccountBase, AdapterOptions, AnyVendor

if TYPE_CHECKING:
    from providers.base import Adapter

VENDORS: dict[str, AnyVendor] = {
    vendor.name: vendor
    for vendor in (
        PANELSMS,
        BRAND,
    )
}

_BY_ACCOUNT: dict[type[AccountBase], AnyVendor] = {v.account: v for v in VENDORS.values()}


def vendor_of(account: AccountBase) -> AnyVendor:
    return _BY_ACCOUNT[type(account)]


def make_adapter(account: AccountBase, *, public_url: str, max_parts: int = 10) -> Adapter:
    options = AdapterOptions(public_url=public_url, max_parts=max_parts)
    return vendor_of(account).make_adapter(account, options)


def report_status_field(adapter: str) -> str:
    """The name of the status field in ``adapter``'s reports (``status`` if unknown)."""
    vendor = VENDORS.get(adapter)
    return vendor.report_status_field if vendor is not None else "status"
