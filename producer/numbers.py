"""Phone numbers: what people type in, E.164 out.

:func:`normalize_number` accepts the usual ways of writing a number with its
country code (``+49 170 1234567``, ``0049 170 1234567``, ``+1 (222)
333-4444``) and returns E.164 (``+491701234567``) when the number is
*possible* and *valid* for its country by libphonenumber's metadata. Letters
are refused outright: libphonenumber would read ``+1 800 FLOWERS`` as a
vanity number, but in a recipient list a letter means a broken cell.

Speed. Campaign ingestion validates every row, and ``phonenumbers.parse`` +
``is_valid_number`` cost about 55 µs a number on the development machine
(parse ~31, is_valid ~19; up to ~50 for +44, which shares its code with
three Crown dependencies) -- at most ~18,000 rows/s before anything is
written. Most lists are already E.164, so those take a fast path that gives
the same answer from the same metadata without the general parser: split off
the country code, and test the national number with the region's patterns
compiled once per country code, the alternatives of each number type merged
into one regex per length. It answers only "valid, and exactly this E.164";
anything else (an invalid number, a national prefix the parser might strip,
a non-geographic code like +800) goes the full way, which also produces the
reason. A number written with separators or ``00`` (``+49 170 123-4567``,
``0049 1701234567``: a few percent of a typical list, each ~55 µs the full
way) is compacted first -- the separators dropped, ``00`` read as ``+``, as
the full way does -- and tried on the fast path again.
``tests/producer/test_validation.py`` checks the fast path against
``phonenumbers`` for every region's example numbers and mutations of them,
``tests/producer/test_numbers.py`` the compacting for formatted ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult
from phonenumbers.phonemetadata import PhoneMetadata

from producer.errors import InvalidField

NOT_A_NUMBER = "not a phone number"
NOT_VALID = "not a valid number for its country"
NO_COUNTRY_CODE = "missing country code (use +<country code>)"

# What people write around the digits. Anything else (a letter, an extension
# marker, a second number after a comma) makes the value "not a phone number".
_ALLOWED = frozenset("0123456789+ -().\t/\u00a0")
_SEPARATORS = str.maketrans(dict.fromkeys(" -().\t/\u00a0"))
# Shape of an E.164 number: a plus, no leading zero, at most 15 digits.
_E164_SHAPE = re.compile(r"\+[1-9][0-9]{1,14}")

# The number types whose patterns decide validity (phonenumbers'
# _number_type_helper tries them in this order; for validity only "any
# matches" counts). Mobile is left out when it shares fixed line's pattern.
_TYPES = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
)
_MAX_NSN = 17  # phonenumbers' _MAX_LENGTH_FOR_NSN

_Matcher = Callable[[str], "re.Match[str] | None"]


def normalize_number(value: str, *, field: str = "to", default_region: str | None = None) -> str:
    """``value`` as E.164, or :class:`InvalidField` naming ``field`` and why.

    ``default_region`` (ISO 3166 code, ``"DE"``) lets national numbers
    (``0170 1234567``) through; without it a country code is required.
    """
    if type(value) is str:
        if _E164_SHAPE.fullmatch(value):
            if _fast_valid(value):
                return value
        else:
            compact = value.translate(_SEPARATORS)
            if compact.startswith("00"):
                compact = "+" + compact[2:]
            if _E164_SHAPE.fullmatch(compact) and _fast_valid(compact):
                return compact
    return _parse(value, field, default_region)


def _parse(value: object, field: str, default_region: str | None) -> str:
    if not isinstance(value, str):
        raise InvalidField(field, f"must be a string, not {type(value).__name__}")
    text = value.strip()
    if not text:
        raise InvalidField(field, "must not be empty")
    if not _ALLOWED.issuperset(text) or "+" in text[1:]:
        raise InvalidField(field, NOT_A_NUMBER)
    if text.startswith("00"):  # the international prefix of most of the world
        text = "+" + text[2:]
    if not text.startswith("+") and default_region is None:
        raise InvalidField(field, NO_COUNTRY_CODE)
    try:
        number = phonenumbers.parse(text, default_region)
    except NumberParseException as exc:
        raise InvalidField(field, _parse_error(exc, text)) from None
    if phonenumbers.is_valid_number(number):
        return str(phonenumbers.format_number(number, PhoneNumberFormat.E164))
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible == ValidationResult.INVALID_COUNTRY_CODE:
        raise InvalidField(field, f"unknown country code +{number.country_code}")
    where = _country(number.country_code)
    # "Possible locally" is a number missing its area code: too short here.
    if possible in (ValidationResult.TOO_SHORT, ValidationResult.IS_POSSIBLE_LOCAL_ONLY):
        raise InvalidField(field, f"{NOT_VALID} ({where}: too short)")
    if possible == ValidationResult.TOO_LONG:
        raise InvalidField(field, f"{NOT_VALID} ({where}: too long)")
    if possible == ValidationResult.INVALID_LENGTH:
        raise InvalidField(field, f"{NOT_VALID} ({where}: wrong length)")
    raise InvalidField(field, f"{NOT_VALID} ({where})")


def _parse_error(exc: NumberParseException, text: str) -> str:
    kind = exc.error_type
    if kind == NumberParseException.INVALID_COUNTRY_CODE:
        if text.startswith("+"):
            return "unknown country code"
        return NO_COUNTRY_CODE
    if kind in (NumberParseException.TOO_SHORT_NSN, NumberParseException.TOO_SHORT_AFTER_IDD):
        return f"{NOT_A_NUMBER} (too short)"
    if kind == NumberParseException.TOO_LONG:
        return f"{NOT_A_NUMBER} (too long)"
    return NOT_A_NUMBER


def _country(country_code: int | None) -> str:
    region = phonenumbers.region_code_for_country_code(country_code or 0)
    known = region != phonenumbers.UNKNOWN_REGION
    return f"+{country_code}, {region}" if known else f"+{country_code}"


# --- the fast path -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Region:
    """One region's validity test, as phonenumbers' _number_type_helper."""

    leading_digits: _Matcher | None  # picks the region among those of a code
    general: _Matcher  # the general description's pattern (fullmatch)
    by_length: dict[int, _Matcher]  # length -> the number types' patterns, merged

    def valid(self, nsn: str) -> bool:
        types = self.by_length.get(len(nsn))
        return types is not None and self.general(nsn) is not None and types(nsn) is not None


@dataclass(frozen=True, slots=True)
class _Country:
    regions: tuple[_Region, ...]
    national_prefix: _Matcher | None  # the parser strips what this matches: not ours to judge
    region_codes: tuple[str, ...] = ()  # ISO 3166-1 alpha-2, in the order of ``regions``

    def region_of(self, nsn: str) -> str | None:
        """The region of a valid national number, as phonenumbers'
        region_code_for_number: the only one, or the first whose leading
        digits match, or else the first where the number is valid."""
        if len(self.region_codes) == 1:
            return self.region_codes[0]
        for code, region in zip(self.region_codes, self.regions, strict=True):
            if region.leading_digits is not None:
                if region.leading_digits(nsn) is not None:
                    return code
            elif region.valid(nsn):
                return code
        return None

    def valid(self, nsn: str) -> bool:
        if self.national_prefix is not None and self.national_prefix(nsn) is not None:
            return False
        if len(self.regions) == 1:
            return self.regions[0].valid(nsn)
        # phonenumbers' _region_code_for_number_from_list: the first region
        # whose leading digits match decides; one without leading digits is
        # chosen when the number is valid there.
        for region in self.regions:
            if region.leading_digits is not None:
                if region.leading_digits(nsn) is not None:
                    return region.valid(nsn)
            elif region.valid(nsn):
                return True
        return False


# country code digits -> its test; True: a country code left to the parser
# (non-geographic); False: not a country code. Filled on first use of each
# prefix: a few hundred small entries at most.
_COUNTRIES: dict[str, _Country | bool] = {}


def region_of(e164: str) -> str | None:
    """The country (ISO 3166-1 alpha-2) of a valid E.164 number, as
    ``phonenumbers.region_code_for_number`` says; None when it names none
    (``+800``, an unknown code).

    From the same compiled metadata as the fast path: the country code alone
    when it has one region, its regions' leading digits and patterns when it
    is shared (``+1``, ``+44``, ``+7`` ...); about a microsecond, where the
    parser takes tens. Non-geographic codes go to the parser.
    """
    digits = e164[1:]
    for size in (1, 2, 3):
        code = digits[:size]
        entry = _COUNTRIES.get(code)
        if entry is None:
            entry = _COUNTRIES[code] = _build_country(int(code))
        if isinstance(entry, _Country):
            return entry.region_of(digits[size:])
        if entry:
            break
    try:
        region: str | None = phonenumbers.region_code_for_number(phonenumbers.parse(e164))
    except NumberParseException:
        return None
    if region in (phonenumbers.UNKNOWN_REGION, phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY):
        return None
    return region


def _fast_valid(e164: str) -> bool:
    """True when ``e164`` is a valid number exactly as written; False: not sure."""
    digits = e164[1:]
    for size in (1, 2, 3):  # country codes are prefix-free (ITU-T E.164)
        code = digits[:size]
        entry = _COUNTRIES.get(code)
        if entry is None:
            entry = _COUNTRIES[code] = _build_country(int(code))
        if isinstance(entry, _Country):
            return entry.valid(digits[size:])
        if entry:
            return False
    return False


def _build_country(code: int) -> _Country | bool:
    region_codes = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code)
    if not region_codes:
        return False
    if phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY in region_codes:
        return True
    regions = []
    for region_code in region_codes:
        metadata = PhoneMetadata.metadata_for_region(region_code, None)
        region = _build_region(metadata) if metadata is not None else None
        if region is None:
            return True
        regions.append(region)
    main = PhoneMetadata.metadata_for_region(region_codes[0], None)
    prefix = main.national_prefix_for_parsing if main is not None else None
    return _Country(
        tuple(regions), re.compile(prefix).match if prefix else None, tuple(region_codes)
    )


def _build_region(metadata: PhoneMetadata) -> _Region | None:
    general = metadata.general_desc
    if general is None or not general.national_number_pattern:
        return None
    names = list(_TYPES)
    if not metadata.same_mobile_and_fixed_line_pattern:
        names.append("mobile")
    descs = [d for d in (getattr(metadata, name) for name in names) if d is not None]
    by_length: dict[int, _Matcher] = {}
    for length in range(1, _MAX_NSN + 1):
        if not _length_ok(general.possible_length, length):
            continue
        patterns = [
            d.national_number_pattern
            for d in descs
            if d.national_number_pattern and _length_ok(d.possible_length, length)
        ]
        if patterns:
            try:
                merged = re.compile("|".join(f"(?:{p})" for p in patterns))
            except re.error:
                return None
            by_length[length] = merged.fullmatch
    leading = metadata.leading_digits
    return _Region(
        leading_digits=re.compile(leading).match if leading else None,
        general=re.compile(general.national_number_pattern).fullmatch,
        by_length=by_length,
    )


def _length_ok(possible: tuple[int, ...] | None, length: int) -> bool:
    # An empty list means "as the general description" (already checked).
    return not possible or length in possible
