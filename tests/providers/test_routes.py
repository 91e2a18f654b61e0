"""A ``[[routes]]`` table on its own, against the accounts, and what its
accounts can carry."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from models.status import MessageKind
from providers.accounts import BrandAccount, PanelSmsAccount
from providers.routes import Route, RouteError, carriage_problem, check_route
from providers.vendor import AccountBase


def panel(name: str = "panel", sender: str | None = "SMSQ") -> PanelSmsAccount:
    return PanelSmsAccount(
        name=name,
        adapter="panelsms",
        url="http://127.0.0.1:8025/sendMtSms.php",  # type: ignore[arg-type]
        user="u",
        api_key="k",  # type: ignore[arg-type]
        sender=sender,
    )


def brand(name: str = "brand", brand_id: str = "SMSQ") -> BrandAccount:
    return BrandAccount(
        name=name,
        adapter="brand",
        url="http://127.0.0.1:8025/brand/send",  # type: ignore[arg-type]
        key="k",  # type: ignore[arg-type]
        brand_id=brand_id,
    )


def route(**fields: Any) -> Route:
    return Route.model_validate({"name": "otp", "accounts": ["brand", "panel"], **fields})


ACCOUNTS: dict[str, AccountBase] = {"panel": panel(), "brand": brand()}


def test_a_route_reads_the_issue_example() -> None:
    otp = route(kinds=["otp"], countries=["DE", "AT"], prefixes=["+49151"])
    assert otp.kinds == (MessageKind.OTP,)
    assert (otp.countries, otp.prefixes, otp.accounts) == (
        ("DE", "AT"),
        ("+49151",),
        ("brand", "panel"),
    )
    assert otp.conditional and otp.weights is None
    bulk = route(name="bulk", kinds=["campaign"], accounts=["panel", "brand"], weights=[70, 30])
    assert bulk.weights == (70, 30) and not bulk.conditional


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"accounts": []}, "accounts", "must not be empty"),
        ({"accounts": ["panel", "panel"]}, "accounts", "'panel' listed twice"),
        ({"weights": [70]}, "weights", "1 weights for 2 accounts"),
        ({"weights": [70, 0]}, "weights.1", "greater than 0"),
        ({"weights": [70, -5]}, "weights.1", "greater than 0"),
        ({"kinds": ["sms"]}, "kinds.0", "'otp', 'transactional' or 'campaign'"),
        ({"kinds": []}, "kinds", "must not be empty"),
        ({"countries": []}, "countries", "must not be empty"),
        ({"prefixes": []}, "prefixes", "must not be empty"),
        ({"countries": ["DE", "XX"]}, "countries", "unknown country code 'XX'"),
        ({"countries": ["de"]}, "countries", "unknown country code 'de'"),
        ({"prefixes": ["+49", "49151"]}, "prefixes", "prefix '49151': '+' and 1 to 15 digits"),
        ({"prefixes": ["+49 151"]}, "prefixes", "prefix '+49 151'"),
        ({"prefixes": ["+"]}, "prefixes", "prefix '+'"),
        ({"name": ""}, "name", "at least 1 character"),
        ({"weight": [1, 2]}, "weight", "Extra inputs are not permitted"),
    ],
)
def test_a_malformed_route_names_the_field(fields: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        route(**fields)
    (error,) = info.value.errors()
    assert ".".join(str(p) for p in error["loc"]) == field
    assert reason in error["msg"]


def test_matching_by_kind_country_and_prefix() -> None:
    otp = route(kinds=["otp", "transactional"], countries=["DE"], prefixes=["+49151", "+49160"])
    assert otp.takes_kind(MessageKind.OTP) and not otp.takes_kind(MessageKind.CAMPAIGN)
    assert otp.takes_number("+4915123456789", "DE")
    assert not otp.takes_number("+4917012345678", "DE")  # no listed prefix
    assert not otp.takes_number("+4915123456789", "AT")
    assert not otp.takes_number("+80012345678", None)
    anything = route()
    assert anything.takes_kind(MessageKind.CAMPAIGN) and anything.takes_number("+1", None)


@pytest.mark.parametrize(
    ("fields", "taken", "field", "reason"),
    [
        ({"name": "panel"}, set(), "name", "'panel' is an account's name"),
        ({}, {"otp"}, "name", "a route named 'otp' comes earlier"),
        ({"accounts": ["brand", "acme"]}, set(), "accounts", "no account named 'acme'"),
    ],
)
def test_a_route_is_checked_against_accounts_and_earlier_routes(
    fields: dict[str, Any], taken: set[str], field: str, reason: str
) -> None:
    with pytest.raises(RouteError) as info:
        check_route(route(**fields), ACCOUNTS, taken)
    assert info.value.field == field
    assert reason in info.value.reason


def test_the_accounts_of_a_route_must_show_the_same_sender() -> None:
    check_route(route(), ACCOUNTS, set())  # brandID SMSQ, sender SMSQ
    accounts: dict[str, AccountBase] = {"panel": panel(sender=None), "brand": brand()}
    with pytest.raises(RouteError) as info:
        check_route(route(), accounts, set())
    assert info.value.field == "accounts"
    assert "brand: 'SMSQ', panel: the provider's default" in info.value.reason
    other = {"panel": panel(sender="ACME"), "brand": brand()}
    with pytest.raises(RouteError, match="different senders"):
        check_route(route(), other, set())


def test_what_accounts_carry() -> None:
    assert panel().carries_flash and panel().carries_own_sender
    assert not brand().carries_flash and not brand().carries_own_sender
    assert (panel(sender=None).default_sender, brand(brand_id="ACME").default_sender) == (
        None,
        "ACME",
    )


def test_a_message_an_account_of_its_route_would_change_is_refused() -> None:
    mixed = route()
    assert carriage_problem(mixed, ACCOUNTS, flash=False, sender=None) is None
    field, reason = carriage_problem(mixed, ACCOUNTS, flash=True, sender=None) or ("", "")
    assert field == "flash"
    assert "route 'otp' cannot carry a flash SMS: account 'brand' (brand)" in reason
    field, reason = carriage_problem(mixed, ACCOUNTS, flash=False, sender="SHOP") or ("", "")
    assert field == "sender"
    assert "account 'brand' (brand) always sends 'SMSQ'" in reason
    # The sender brand sends anyway is no change.
    assert carriage_problem(mixed, ACCOUNTS, flash=False, sender="SMSQ") is None
    panels = {"a": panel("a"), "b": panel("b")}
    both = route(accounts=["a", "b"])
    assert carriage_problem(both, panels, flash=True, sender="SHOP") is None
