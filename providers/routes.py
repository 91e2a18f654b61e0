"""Routes: one ``[[routes]]`` table of the providers file each.

A route names the provider accounts a message may go out on and the messages
it is for: its ``kinds`` (``otp``, ``transactional``, ``campaign``), the
``countries`` of the destination (ISO 3166-1 alpha-2, as libphonenumber
knows them) and E.164 ``prefixes``; a condition left out holds for every
message. ``accounts`` are tried in order, or split by ``weights``. The
producer picks the first route whose conditions all hold
(:mod:`producer.routing`); the worker chooses the account when it sends.

What is checked here, once, when the file is read: each table on its own
(:class:`Route`), and against the accounts and the other routes
(:func:`check_route`): every account exists, a route is not named like an
account (one namespace for ``provider=``), and the accounts of one route
show recipients the same sender. What a message asks for that not every
account of its route can carry (flash, a sender of its own) is refused when
the message is accepted (:func:`carriage_problem`). docs/routing.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Set
from typing import Annotated

import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from models.status import MessageKind
from providers.vendor import AccountBase

ROUTE_NAME_MAX = 64  # messages.route

RouteName = Annotated[str, StringConstraints(min_length=1, max_length=ROUTE_NAME_MAX)]

_PREFIX = re.compile(r"\+[0-9]{1,15}")
KNOWN_COUNTRIES: frozenset[str] = frozenset(phonenumbers.SUPPORTED_REGIONS)


class RouteError(ValueError):
    """A route that does not fit the rest of the file; names the field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"field {field!r}: {reason}")
        self.field = field
        self.reason = reason


class Route(BaseModel):
    """One ``[[routes]]`` table; frozen, like the accounts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: RouteName
    kinds: tuple[MessageKind, ...] | None = None
    countries: tuple[str, ...] | None = None
    prefixes: tuple[str, ...] | None = None
    accounts: tuple[str, ...]
    weights: tuple[Annotated[int, Field(gt=0)], ...] | None = None

    @field_validator("kinds", "countries", "prefixes", "accounts")
    @classmethod
    def _not_empty(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and not value:
            raise ValueError("must not be empty (leave a condition out to match every message)")
        return value

    @field_validator("prefixes")
    @classmethod
    def _e164_prefixes(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for prefix in value or ():
            if not _PREFIX.fullmatch(prefix):
                raise ValueError(f"prefix {prefix!r}: '+' and 1 to 15 digits, e.g. '+49151'")
        return value

    @field_validator("countries")
    @classmethod
    def _known_countries(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        unknown = [c for c in value if c not in KNOWN_COUNTRIES]
        if unknown:
            shown = ", ".join(repr(c) for c in unknown)
            raise ValueError(
                f"unknown country code {shown} (ISO 3166-1 alpha-2, upper case, e.g. 'DE')"
            )
        return value

    @field_validator("accounts")
    @classmethod
    def _each_account_once(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        twice = sorted({a for a in value if value.count(a) > 1})
        if twice:
            raise ValueError(f"account {', '.join(repr(a) for a in twice)} listed twice")
        return value

    @field_validator("weights")
    @classmethod
    def _one_weight_per_account(
        cls, value: tuple[int, ...] | None, info: ValidationInfo
    ) -> tuple[int, ...] | None:
        accounts = info.data.get("accounts")
        if value is not None and accounts is not None and len(value) != len(accounts):
            raise ValueError(
                f"{len(value)} weights for {len(accounts)} accounts: one weight per account"
            )
        return value

    @property
    def conditional(self) -> bool:
        """Whether the destination number decides if this route applies."""
        return self.countries is not None or self.prefixes is not None

    def takes_kind(self, kind: MessageKind) -> bool:
        return self.kinds is None or kind in self.kinds

    def takes_number(self, number: str, country: str | None) -> bool:
        """``number`` (E.164) in ``country`` (its region; None: unknown)."""
        if self.countries is not None and country not in self.countries:
            return False
        return self.prefixes is None or number.startswith(self.prefixes)


def check_route(route: Route, accounts: Mapping[str, AccountBase], taken: Set[str]) -> None:
    """``route`` against the accounts and the routes before it (``taken``)."""
    if route.name in accounts:
        raise RouteError(
            "name", f"{route.name!r} is an account's name: routes and accounts share one namespace"
        )
    if route.name in taken:
        raise RouteError("name", f"a route named {route.name!r} comes earlier in the file")
    unknown = [a for a in route.accounts if a not in accounts]
    if unknown:
        known = ", ".join(sorted(accounts))
        shown = ", ".join(repr(a) for a in unknown)
        raise RouteError("accounts", f"no account named {shown} (known: {known})")
    senders = {name: accounts[name].default_sender for name in route.accounts}
    if len(set(senders.values())) > 1:
        shown = ", ".join(f"{name}: {_sender(s)}" for name, s in senders.items())
        raise RouteError(
            "accounts",
            f"the accounts show recipients different senders ({shown}); "
            "a message must look the same on every account of its route",
        )


def _sender(value: str | None) -> str:
    return repr(value) if value is not None else "the provider's default"


def carriage_problem(
    route: Route, accounts: Mapping[str, AccountBase], *, flash: bool, sender: str | None
) -> tuple[str, str] | None:
    """(field, reason) when some account of ``route`` cannot carry the message.

    A flash SMS or a sender of the message's own that one account would drop
    is refused rather than sent differently depending on the account chosen.
    """
    for name in route.accounts:
        account = accounts[name]
        if flash and not account.carries_flash:
            return "flash", (
                f"route {route.name!r} cannot carry a flash SMS: account {name!r} "
                f"({_adapter(account)}) has no flash; name an account as provider instead"
            )
        if (
            sender is not None
            and not account.carries_own_sender
            and sender != (account.default_sender)
        ):
            return "sender", (
                f"route {route.name!r} cannot carry a sender of the message's own: account "
                f"{name!r} ({_adapter(account)}) always sends {_sender(account.default_sender)}"
            )
    return None


def _adapter(account: AccountBase) -> str:
    return str(getattr(account, "adapter", type(account).__name__))
