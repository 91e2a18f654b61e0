"""The one interface every provider adapter implements.

An adapter sends one text to one or more recipients and returns one outcome
per recipient, in order: :class:`Accepted` with the provider's id, or
:class:`Rejected` with a :mod:`providers.errors` error. It never raises for a
provider answer; only programming errors escape.

Adapters are async over a shared ``httpx.AsyncClient`` (one pooled client per
worker process; the transport is chosen in ``providers.http``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

import httpx

from providers.errors import ProviderError


@dataclass(frozen=True, slots=True)
class Recipient:
    message_id: str  # ours; panelsms carries it as transactionId
    to: str  # E.164 with '+'
    first_part: int = 1  # resume a long text after parts already accepted


@dataclass(frozen=True, slots=True)
class Outbound:
    """One text to one or more recipients."""

    text: str
    recipients: Sequence[Recipient]
    sender: str | None = None
    otp: bool = False
    stop_list: bool = True
    flash: bool = False
    validity: int | None = None  # seconds the network keeps trying
    send_time: dt.datetime | None = None  # provider-side schedule; smsq normally schedules itself


@dataclass(frozen=True, slots=True)
class Accepted:
    message_id: str
    provider_message_id: str
    provider_code: int | None = None  # 3 (roaming) is success with a note
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    message_id: str
    error: ProviderError
    parts_sent: int = 0  # parts of a long text the provider already accepted


Outcome = Accepted | Rejected


class Adapter(Protocol):
    adapter_name: ClassVar[str]
    max_recipients: int  # recipients one request can carry

    async def send(self, outbound: Outbound, client: httpx.AsyncClient) -> list[Outcome]: ...
