"""Which route and account a message is stored with (producer.routing)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from models.status import MessageKind
from producer.errors import InvalidField
from producer.numbers import region_of
from producer.routing import Destination, match_route, resolve_routing
from smsq.core.settings import Settings

K = MessageKind
# Example mobile numbers (libphonenumber's) of several countries.
DE = "+4915123456789"
AT = "+43664123456"
CH = "+41781234567"
FR_MOBILE = "+33612345678"
FR_FIXED = "+33123456789"
GB = "+447400123456"
JE = "+447797712345"  # shares +44 with GB
US = "+12015550123"
CA = "+15062345678"  # shares +1 with US
IT = "+393123456789"
PL = "+48512345678"
NUMBERS = (DE, AT, CH, FR_MOBILE, FR_FIXED, GB, JE, US, CA, IT, PL)

ProvidersFile = Callable[..., Path]


@pytest.fixture
def settings(providers_file: ProvidersFile) -> Settings:
    return Settings(providers_file=providers_file(), default_provider="panel")


def test_the_country_of_a_number() -> None:
    assert [region_of(n) for n in NUMBERS] == [
        "DE",
        "AT",
        "CH",
        "FR",
        "FR",
        "GB",
        "JE",
        "US",
        "CA",
        "IT",
        "PL",
    ]
    assert region_of("+80012345678") is None  # international freephone: no country


@pytest.mark.parametrize(
    ("kind", "number", "expected"),
    [
        (K.OTP, DE, "otp-dach"),
        (K.OTP, AT, "otp-dach"),
        (K.OTP, CH, "otp-dach"),
        (K.OTP, FR_MOBILE, "fr-mobile"),  # by prefix, any kind
        (K.OTP, FR_FIXED, None),
        (K.OTP, GB, None),  # uk is not for OTPs
        (K.TRANSACTIONAL, DE, None),
        (K.TRANSACTIONAL, GB, "uk"),
        (K.TRANSACTIONAL, JE, "uk"),
        (K.TRANSACTIONAL, US, None),
        (K.CAMPAIGN, FR_MOBILE, "fr-mobile"),  # before bulk: the first match wins
        (K.CAMPAIGN, GB, "uk"),
        (K.CAMPAIGN, DE, "bulk"),
        (K.CAMPAIGN, CA, "bulk"),
    ],
)
def test_the_first_route_whose_conditions_hold(
    settings: Settings, kind: MessageKind, number: str, expected: str | None
) -> None:
    found = match_route(settings.routes, kind, number)
    assert (found.name if found else None) == expected
    # The fast form gives the same answer, with the default when none matches.
    routing = resolve_routing(None, kind, settings)
    route = settings.routes[expected] if expected else None
    assert routing.destination(number) == (
        Destination(route.accounts[0], route.name) if route else Destination("panel")
    )


def test_every_number_and_kind_agree_with_the_reference_rule(settings: Settings) -> None:
    for kind in K:
        routing = resolve_routing(None, kind, settings)
        for number in NUMBERS:
            route = match_route(settings.routes, kind, number)
            expected = Destination(route.accounts[0], route.name) if route else Destination("panel")
            assert routing.destination(number) == expected, (kind, number)


def test_no_match_takes_the_default_provider(providers_file: ProvidersFile) -> None:
    settings = Settings(providers_file=providers_file(), default_provider="brand")
    assert resolve_routing(None, K.TRANSACTIONAL, settings).destination(US) == Destination("brand")


def test_an_explicit_account_is_that_account_only_and_a_route_name_that_route(
    settings: Settings,
) -> None:
    account = resolve_routing("panel2", K.OTP, settings)
    assert account.fixed == Destination("panel2")  # no route, even for a DE OTP
    assert account.destination(DE) == Destination("panel2")
    route = resolve_routing("bulk", K.OTP, settings)  # whatever its conditions
    assert route.fixed == Destination("panel", "bulk")
    assert route.destination(FR_MOBILE) == Destination("panel", "bulk")


def test_an_unknown_provider_names_accounts_and_routes(settings: Settings) -> None:
    with pytest.raises(InvalidField) as info:
        resolve_routing("acme", K.OTP, settings)
    assert str(info.value) == (
        "provider: no provider named 'acme' (known: brand, panel, panel2; "
        "routes: otp-dach, fr-mobile, uk, bulk)"
    )


def test_the_number_is_read_only_when_it_can_change_the_answer(
    providers_file: ProvidersFile,
) -> None:
    settings = Settings(providers_file=providers_file())
    assert resolve_routing(None, K.OTP, settings).fixed is None
    assert resolve_routing(None, K.CAMPAIGN, settings).fixed is None
    unconditional = Settings(
        providers_file=providers_file(
            '[[routes]]\nname = "all-otp"\nkinds = ["otp"]\naccounts = ["brand", "panel"]\n'
        )
    )
    assert resolve_routing(None, K.OTP, unconditional).fixed == Destination("brand", "all-otp")
    assert resolve_routing(None, K.CAMPAIGN, unconditional).fixed == Destination("panel")
    assert resolve_routing(None, K.OTP, Settings()).fixed == Destination("panel")  # no routes
    # Countries only where a route asks for them.
    assert not resolve_routing(None, K.OTP, settings).routes[1].countries
    assert resolve_routing(None, K.CAMPAIGN, settings).needs_country


def test_a_route_that_would_drop_flash_or_the_sender_is_refused(settings: Settings) -> None:
    flash_otp = resolve_routing(None, K.OTP, settings, flash=True)
    # For the numbers that match it: a French number goes on panelsms accounts.
    assert flash_otp.destination(FR_MOBILE) == Destination("panel2", "fr-mobile")
    with pytest.raises(InvalidField) as info:
        flash_otp.destination(DE)
    assert info.value.field == "flash"
    assert "route 'otp-dach' cannot carry a flash SMS: account 'brand' (brand)" in str(info.value)
    # A campaign is refused before its first row if any number could match it.
    with pytest.raises(InvalidField, match="route 'bulk' cannot carry a sender"):
        resolve_routing(None, K.CAMPAIGN, settings, sender="SHOP", every_number=True)
    with pytest.raises(InvalidField) as info:
        resolve_routing("bulk", K.TRANSACTIONAL, settings, sender="SHOP")
    assert info.value.field == "sender"
    # Routes of panelsms accounts carry both; an explicit account is as before.
    assert resolve_routing(None, K.TRANSACTIONAL, settings, flash=True, sender="SHOP")
    assert resolve_routing("brand", K.OTP, settings, flash=True, sender="SHOP").fixed == (
        Destination("brand")
    )
