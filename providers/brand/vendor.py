"""brand's line in :mod:`providers.registry`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from providers.brand.account import BrandAccount
from providers.brand.reports import STATUS_FIELD
from providers.vendor import AdapterOptions, Vendor

if TYPE_CHECKING:
    from providers.base import Adapter


def make_adapter(account: BrandAccount, options: AdapterOptions) -> Adapter:
    # Imported on use: the providers file (so every process's settings) reads
    # this module, and only a sending process needs the HTTP stack.
    from providers.brand.adapter import BrandAdapter

    return BrandAdapter(account)


BRAND = Vendor("brand", BrandAccount, make_adapter, report_status_field=STATUS_FIELD)
