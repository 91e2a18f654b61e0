"""panelsms's line in :mod:`providers.registry`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from providers.panelsms.account import PanelSmsAccount
from providers.panelsms.reports import STATUS_FIELD
from providers.vendor import AdapterOptions, Vendor

if TYPE_CHECKING:
    from providers.base import Adapter


def make_adapter(account: PanelSmsAccount, options: AdapterOptions) -> Adapter:
    # Imported on use: the providers file (so every process's settings) reads
    # this module, and only a sending process needs the HTTP stack.
    from providers.panelsms.adapter import PanelSmsAdapter

    return PanelSmsAdapter(account, public_url=options.public_url, max_parts=options.max_parts)


PANELSMS = Vendor("panelsms", PanelSmsAccount, make_adapter, report_status_field=STATUS_FIELD)
