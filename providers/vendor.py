"""What a vendor supplies to smsq: its account table and its adapter.

Each vendor folder (``providers/<vendor>/``) defines one :class:`Vendor` in its
``vendor`` module, and :mod:`providers.registry` lists them, one line each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

if TYPE_CHECKING:
    from providers.base import Adapter


class AccountBase(BaseModel):
    """What every provider account has: one ``[providers.<name>]`` table.

    Each vendor's account adds its credentials (``SecretStr``: never shown in
    logs, reprs or errors) and ``adapter: Literal["<vendor>"]``, which tells
    the tables apart.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # What the vendor's API can carry of a message (routes compare them:
    # providers.routes). A flash SMS; a sender named by the message.
    carries_flash: ClassVar[bool] = False
    carries_own_sender: ClassVar[bool] = False

    name: str = ""  # filled from the table name: [providers.<name>]
    url: HttpUrl
    rate: float = Field(default=100, gt=0, description="segments per second")
    burst: int = Field(default=100, ge=1, description="bucket capacity, in segments")
    timeout: float = Field(default=10.0, gt=0, description="seconds to wait for an answer")
    dlr: bool = True  # ask for delivery reports

    @property
    def expects_reports(self) -> bool:
        """Silence from this account is evidence: it sends delivery reports."""
        return self.dlr

    @property
    def default_sender(self) -> str | None:
        """The sender recipients see when a message names none (None: the provider's)."""
        return None


AccountT = TypeVar("AccountT", bound=AccountBase)


@dataclass(frozen=True, slots=True)
class AdapterOptions:
    """What smsq's settings give every adapter."""

    public_url: str  # where delivery reports reach us
    max_parts: int = 10


@dataclass(frozen=True, slots=True)
class Vendor(Generic[AccountT]):
    name: str  # the ``adapter`` of its accounts in the providers file
    account: type[AccountT]
    make_adapter: Callable[[AccountT, AdapterOptions], Adapter]
    # The name of the status field of its delivery reports, for texts that
    # quote a report ("delivery report: brand statusID 4").
    report_status_field: str


AnyVendor = Vendor[Any]
