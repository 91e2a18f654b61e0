"""brand's line in :mod:`providers.registry`."""

from __future__ import annotations

from providers.base import Adapter
from providers.brand.account import BrandAccount
from providers.brand.adapter import BrandAdapter
from providers.brand.reports import STATUS_FIELD
from providers.vendor import AdapterOptions, Vendor


def make_adapter(account: BrandAccount, options: AdapterOptions) -> Adapter:
    return BrandAdapter(account)


BRAND = Vendor("brand", BrandAccount, make_adapter, report_status_field=STATUS_FIELD)
