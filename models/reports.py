"""A delivery report, read into one shape whatever the vendor.

Plain data: each vendor's parser (``providers/<vendor>/reports.py``) fills it,
and recording it needs nothing else of the vendor. A status the vendor's map
does not know is ``unknown`` with the raw value kept: never dropped.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from models.status import MessageStatus


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    adapter: str  # the vendor's name: the ``adapter`` of its accounts
    status: MessageStatus
    raw_status: str
    # How the report names its message: our id (panelsms transactionId), or
    # the provider's id (brand smsID), or both. Matching prefers our id; a
    # provider id fills a message whose worker has not stored it yet.
    message_id: str | None = None
    provider_message_id: str | None = None
    number: str | None = None
    error_code: int | None = None
    error_detail: str | None = None
    at: dt.datetime | None = None
    # The vendor's name of the status field, to quote the report in texts.
    status_field: str = "status"
