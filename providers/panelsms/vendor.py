"""panelsms's line in :mod:`providers.registry`."""

from __future__ import annotations

from providers.base import Adapter
from providers.panelsms.account import PanelSmsAccount
from providers.panelsms.adapter import PanelSmsAdapter
from providers.panelsms.reports import STATUS_FIELD
from providers.vendor import AdapterOptions, Vendor


def make_adapter(account: PanelSmsAccount, options: AdapterOptions) -> Adapter:
    return PanelSmsAdapter(account, public_url=options.public_url, max_parts=options.max_parts)


PANELSMS = Vendor("panelsms", PanelSmsAccount, make_adapter, report_status_field=STATUS_FIELD)
