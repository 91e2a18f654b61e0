"""The compacting fast path of ``producer.numbers``: a number written with
separators or ``00`` gets exactly the answer of the full parser."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from producer.errors import InvalidField
from producer.numbers import _parse, normalize_number, region_of


def _outcome(fn: object, value: str) -> str:
    try:
        return str(fn(value, "to", None))  # type: ignore[operator]
    except InvalidField as exc:
        return f"! {exc.reason}"


def _written_ways() -> list[str]:
    """Every region's example numbers, as people write them, some mutated."""
    rnd = random.Random(20260115)
    out: set[str] = set()
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in phonenumbers.PhoneNumberType.values():
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            spaced = phonenumbers.format_number(
                example, phonenumbers.PhoneNumberFormat.INTERNATIONAL
            )
            out.add(spaced)  # "+49 30 123456"
            out.add("00" + spaced[1:])
            out.add(spaced.replace(" ", "-"))
            out.add(f" {spaced} ")
            digits = spaced[1:].replace(" ", "")
            code = str(example.country_code)
            out.add(f"+{code} ({digits[len(code) :][:3]}) {digits[len(code) + 3 :]}")
            out.add(f"+{code} (0) {digits[len(code) :]}")  # a national prefix kept
            i = rnd.randrange(1, len(spaced))
            out.add(spaced[:i] + str(rnd.randrange(10)) + spaced[i:])
    return sorted(out)


def test_compacted_numbers_get_the_full_parsers_answer() -> None:
    values = _written_ways()
    assert len(values) > 5000
    for value in values:
        assert _outcome(lambda v, f, r: normalize_number(v, field=f), value) == _outcome(
            _parse, value
        ), value


@pytest.mark.parametrize(
    ("value", "e164"),
    [
        ("+49 170 1234567", "+491701234567"),
        ("0049-170-123 4567", "+491701234567"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+1 (212) 736-5000", "+12127365000"),
        ("+33\u00a06 12 34 56 78", "+33612345678"),
    ],
)
def test_written_numbers_come_out_as_e164(value: str, e164: str) -> None:
    assert normalize_number(value) == e164


def test_the_region_of_a_number_is_libphonenumbers() -> None:
    # Every valid E.164 form of the examples above, with its region by the parser.
    checked = set()
    for value in _written_ways():
        try:
            e164 = normalize_number(value)
        except InvalidField:
            continue
        checked.add(e164)
    assert len(checked) > 1000
    for e164 in sorted(checked):
        expected = phonenumbers.region_code_for_number(phonenumbers.parse(e164))
        if expected in ("001", "ZZ"):
            expected = None
        assert region_of(e164) == expected, e164


@pytest.mark.parametrize(
    ("e164", "region"),
    [
        ("+4915123456789", "DE"),
        ("+447400123456", "GB"),
        ("+447797712345", "JE"),  # +44 is shared with the Crown dependencies
        ("+12015550123", "US"),
        ("+15062345678", "CA"),
        ("+79123456789", "RU"),
        ("+77710009998", "KZ"),
        ("+80012345678", None),  # international freephone: no country
    ],
)
def test_region_of_shared_and_non_geographic_codes(e164: str, region: str | None) -> None:
    assert region_of(e164) == region
