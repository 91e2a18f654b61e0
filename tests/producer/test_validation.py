from __future__ import annotations

import datetime as dt
import pickle
import random
from collections.abc import Callable

import phonenumbers
import pytest

from models.status import MessageKind
from producer.errors import InvalidField
from producer.numbers import _fast_valid
from producer.validation import (
    check_callback_url,
    check_idempotency,
    check_kind,
    check_sender,
    check_text,
    normalize_number,
    parse_send_at,
    resolve_provider,
    resolve_validity,
)
from smsq.core.settings import Settings

NOW = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.UTC)


def reason_of(exc: pytest.ExceptionInfo[InvalidField]) -> str:
    return exc.value.reason


# --- errors ------------------------------------------------------------------


def test_invalid_field_names_the_field_and_survives_pickling() -> None:
    err = InvalidField("to", "not a phone number")
    assert str(err) == "to: not a phone number"
    assert isinstance(err, ValueError)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.field, copy.reason, str(copy)) == ("to", "not a phone number", str(err))


# --- numbers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "e164"),
    [
        ("+491701234567", "+491701234567"),  # DE mobile, already E.164 (fast path)
        ("+49 170 1234567", "+491701234567"),  # spaces
        ("0049 170 1234567", "+491701234567"),  # 00 international prefix
        ("+49 (0)170 123-4567", "+491701234567"),  # national prefix in brackets
        ("+49 30 901820", "+4930901820"),  # DE landline
        ("+1 (212) 736-5000", "+12127365000"),  # US, punctuation
        ("+12127365000", "+12127365000"),
        ("+44 7911 123456", "+447911123456"),  # UK mobile
        ("+447911123456", "+447911123456"),
        ("  +33 6 12 34 56 78\n", "+33612345678"),  # surrounding blanks
    ],
)
def test_normalize_number_accepts_what_people_write(value: str, e164: str) -> None:
    assert normalize_number(value) == e164


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("+49 170 CALLME", "not a phone number"),  # letters, not a vanity number
        ("call +491701234567", "not a phone number"),
        ("+49 170 1234567 ext. 12", "not a phone number"),
        ("+491701234567, +491701234568", "not a phone number"),
        ("49+1701234567", "not a phone number"),
        ("+49 1", "not a phone number (too short)"),
        ("+49 12", "not a valid number for its country (+49, DE: too short)"),
        ("+4917012345678901234", "not a valid number for its country (+49, DE: too long)"),
        ("+49 999 9999999", "not a valid number for its country (+49, DE)"),
        ("+1 (222) 333-4444", "not a valid number for its country (+1, US)"),  # no area 222
        ("0170 1234567", "missing country code (use +<country code>)"),
        ("1701234567", "missing country code (use +<country code>)"),
        ("+999 1234567", "unknown country code"),
        ("", "must not be empty"),
        ("   ", "must not be empty"),
    ],
)
def test_normalize_number_says_what_is_wrong(value: str, reason: str) -> None:
    with pytest.raises(InvalidField) as exc:
        normalize_number(value)
    assert exc.value.field == "to"
    assert exc.value.reason == reason


def test_normalize_number_names_the_given_field_and_refuses_non_strings() -> None:
    with pytest.raises(InvalidField) as exc:
        normalize_number("nope", field="phone")
    assert str(exc.value) == "phone: not a phone number"
    with pytest.raises(InvalidField, match="must be a string, not int"):
        normalize_number(491701234567)  # type: ignore[arg-type]


def test_a_default_region_lets_national_numbers_through() -> None:
    assert normalize_number("0170 1234567", default_region="DE") == "+491701234567"
    assert normalize_number("(212) 736-5000", default_region="US") == "+12127365000"
    # An explicit country code wins over the default region.
    assert normalize_number("+44 7911 123456", default_region="DE") == "+447911123456"


def _candidates() -> list[str]:
    """Every region's example numbers, and random mutations of them."""
    rnd = random.Random(20260115)
    out: set[str] = set()
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in phonenumbers.PhoneNumberType.values():
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
            out.add(e164)
            for _ in range(3):
                digits = list(e164[1:])
                i = rnd.randrange(1, len(digits))
                op = rnd.randrange(3)
                if op == 0:
                    digits[i] = str(rnd.randrange(10))
                elif op == 1:
                    digits.insert(i, str(rnd.randrange(10)))
                elif len(digits) > 3:
                    del digits[i]
                out.add("+" + "".join(digits))
    return sorted(out)


def test_fast_path_agrees_with_phonenumbers() -> None:
    """Whatever the fast path accepts, phonenumbers accepts as exactly that number."""
    fast = 0
    for e164 in _candidates():
        if not _fast_valid(e164):
            continue
        fast += 1
        number = phonenumbers.parse(e164, None)
        assert phonenumbers.is_valid_number(number), e164
        assert phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) == e164
    assert fast > 1000  # it does cover the ordinary numbers of most countries


@pytest.mark.parametrize(
    "e164", ["+491701234567", "+12127365000", "+447911123456", "+33612345678", "+4930901820"]
)
def test_common_numbers_take_the_fast_path(e164: str) -> None:
    assert _fast_valid(e164)


# --- text --------------------------------------------------------------------


def test_check_text_returns_encoding_and_parts() -> None:
    sms = check_text("Hello", max_parts=10)
    assert (sms.encoding, sms.segments) == ("gsm7", 1)
    assert check_text("Grüße 😀", max_parts=10).encoding == "ucs2"


def test_too_long_gsm7_text_names_length_and_encoding() -> None:
    with pytest.raises(InvalidField) as exc:
        check_text("a" * 400, max_parts=2)
    assert exc.value.field == "text"
    assert str(exc.value).startswith("text: too long: 400 septets in GSM-7 (gsm7)")
    assert "need 3 parts" in exc.value.reason and "maximum of 2" in exc.value.reason


def test_too_long_ucs2_text_names_the_characters_that_forced_it() -> None:
    with pytest.raises(InvalidField) as exc:
        check_text("á" + "a" * 200, max_parts=2)
    reason = exc.value.reason
    assert "201 UTF-16 units in UCS-2 (ucs2)" in reason
    assert "'á' (U+00E1)" in reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "must not be empty"),
        ("a\x00b", "contains a NUL character (U+0000)"),
        ("bad \udcff byte", "contains a lone surrogate"),
    ],
)
def test_unsendable_or_unstorable_text_is_refused(text: str, reason: str) -> None:
    with pytest.raises(InvalidField) as exc:
        check_text(text, max_parts=10)
    assert exc.value.field == "text"
    assert exc.value.reason.startswith(reason)


# --- send_at -----------------------------------------------------------------


def test_iso_time_with_a_zone_comes_back_in_utc() -> None:
    when = parse_send_at("2026-02-01T23:30:00+01:00", now=NOW, tz="UTC")
    assert when == dt.datetime(2026, 2, 1, 22, 30, tzinfo=dt.UTC)
    assert when.tzinfo is dt.UTC
    assert parse_send_at("2026-02-01T22:30:00Z", now=NOW, tz="UTC") == when


@pytest.mark.parametrize("value", ["2026-02-01T23:30:00", "2026-02-01T23:30", "2026-02-01"])
def test_iso_time_without_a_zone_is_refused(value: str) -> None:
    with pytest.raises(InvalidField) as exc:
        parse_send_at(value, now=NOW, tz="Europe/Berlin")
    assert exc.value.field == "send_at"
    assert exc.value.reason == "needs a time zone, e.g. 2026-02-01T23:30:00+01:00"


def test_vendor_form_is_read_in_the_configured_zone() -> None:
    # Berlin is UTC+1 in winter and UTC+2 in summer.
    winter = parse_send_at("2026-02-01 23:30", now=NOW, tz="Europe/Berlin")
    assert winter == dt.datetime(2026, 2, 1, 22, 30, tzinfo=dt.UTC)
    summer = parse_send_at("2026-07-01 08:00", now=NOW, tz="Europe/Berlin")
    assert summer == dt.datetime(2026, 7, 1, 6, 0, tzinfo=dt.UTC)
    assert parse_send_at("2026-02-01 23:30", now=NOW, tz="UTC") == dt.datetime(
        2026, 2, 1, 23, 30, tzinfo=dt.UTC
    )


def test_vendor_time_skipped_by_a_clock_change_is_refused() -> None:
    with pytest.raises(InvalidField, match="does not exist in Europe/Berlin"):
        parse_send_at("2026-03-29 02:30", now=NOW, tz="Europe/Berlin")


@pytest.mark.parametrize("value", ["2026-02-01 23:30:00x", "tomorrow", "2026-13-01 10:00"])
def test_unreadable_times_are_refused(value: str) -> None:
    with pytest.raises(InvalidField) as exc:
        parse_send_at(value, now=NOW, tz="UTC")
    assert exc.value.field == "send_at"


def test_past_or_present_times_are_refused_with_both_times() -> None:
    with pytest.raises(InvalidField) as exc:
        parse_send_at("2026-01-15T12:00:00+01:00", now=NOW, tz="UTC")
    assert exc.value.reason == (
        "must be in the future (it is 2026-01-15T12:00:00+01:00 "
        "and now is 2026-01-15T13:00:00+01:00)"
    )
    with pytest.raises(InvalidField, match="must be in the future"):
        parse_send_at(NOW, now=NOW, tz="UTC")  # "now" is not the future


def test_datetime_objects_must_be_aware() -> None:
    later = NOW + dt.timedelta(hours=1)
    plus5 = later.astimezone(dt.timezone(dt.timedelta(hours=5)))
    assert parse_send_at(plus5, now=NOW, tz="UTC") == later
    with pytest.raises(InvalidField, match="needs a time zone"):
        parse_send_at(later.replace(tzinfo=None), now=NOW, tz="UTC")


def test_no_send_time_means_now() -> None:
    assert parse_send_at(None, now=NOW, tz="UTC") is None
    assert parse_send_at("  ", now=NOW, tz="UTC") is None


def test_a_bad_configured_zone_names_the_setting() -> None:
    with pytest.raises(ValueError, match="SMSQ_TIMEZONE: unknown time zone 'Mars/Base'"):
        parse_send_at("2026-02-01 23:30", now=NOW, tz="Mars/Base")


# --- provider, kind, validity, sender, callback -------------------------------


def test_unknown_provider_is_refused_naming_the_known_ones() -> None:
    settings = Settings()
    assert resolve_provider(None, settings) == settings.default_provider_name
    assert resolve_provider("brand", settings) == "brand"
    with pytest.raises(InvalidField) as exc:
        resolve_provider("acme", settings)
    assert str(exc.value) == "provider: no provider named 'acme' (known: brand, panel)"


def test_kind_is_otp_or_transactional() -> None:
    assert check_kind("otp") is MessageKind.OTP
    with pytest.raises(InvalidField, match="submit_campaign"):
        check_kind("campaign")
    with pytest.raises(InvalidField) as exc:
        check_kind("bulk")
    assert exc.value.field == "kind"


def test_validity_defaults_by_kind_and_must_be_positive_seconds() -> None:
    settings = Settings(otp_validity=300, default_validity=7200)
    assert resolve_validity(None, MessageKind.OTP, settings) == 300
    assert resolve_validity(None, MessageKind.TRANSACTIONAL, settings) == 7200
    assert resolve_validity(60, MessageKind.OTP, settings) == 60
    for bad in (0, -5, True, 1.5, "60"):
        with pytest.raises(InvalidField) as exc:
            resolve_validity(bad, MessageKind.OTP, settings)  # type: ignore[arg-type]
        assert exc.value.field == "validity"


def test_sender_and_callback_url_checks() -> None:
    assert check_sender(None) is None
    assert check_sender("SHOP") == "SHOP"
    with pytest.raises(InvalidField, match="at most 16"):
        check_sender("x" * 17)
    signing = Settings(webhook_secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    url = "https://example.com/dlr?id=1"
    assert check_callback_url(url, signing) == url
    bad_urls = (
        "ftp://example.com",
        "/relative",
        "example.com",
        "http://example.com/",  # https only, unless SMSQ_WEBHOOK_ALLOW_HTTP
        "https://127.0.0.1/",
        "https://169.254.169.254/latest/meta-data",
        "https://2130706433/",
        "https://[::ffff:10.0.0.1]/",
    )
    for bad in bad_urls:
        with pytest.raises(InvalidField) as exc:
            check_callback_url(bad, signing)
        assert exc.value.field == "callback_url"


def test_a_callback_url_needs_a_secret_to_sign_with() -> None:
    url = "https://example.com/hook"
    with pytest.raises(InvalidField, match="SMSQ_WEBHOOK_SECRET") as exc:
        check_callback_url(url, Settings())
    assert exc.value.field == "callback_url"
    assert check_callback_url(url, Settings(), signed_by_key=True) == url


@pytest.mark.parametrize(
    ("check", "field"),
    [
        (lambda: check_sender("SH\x00P"), "sender"),
        (lambda: check_idempotency("", "order\x00"), "idempotency_key"),
        (lambda: check_callback_url("https://a.example\x00/", Settings()), "callback_url"),
    ],
)
def test_control_characters_are_refused_by_name(check: Callable[[], object], field: str) -> None:
    # Regression (fuzz): a NUL reached PostgreSQL, which refuses it, as a 500.
    with pytest.raises(InvalidField, match="control characters") as exc:
        check()
    assert exc.value.field == field


def test_times_stay_real_dates() -> None:
    # Regression (fuzz): a send_at in year 9999 plus a validity overflowed (a 500).
    now = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    with pytest.raises(InvalidField, match="at most 365 days ahead") as exc:
        parse_send_at("9999-12-31T23:59:00+00:00", now=now, tz="UTC")
    assert exc.value.field == "send_at"
    assert parse_send_at("2027-02-28T12:00:00+00:00", now=now, tz="UTC") is not None
    with pytest.raises(InvalidField, match="at most 2592000 seconds") as exc:
        resolve_validity(10**12, MessageKind.TRANSACTIONAL, Settings())
    assert exc.value.field == "validity"
