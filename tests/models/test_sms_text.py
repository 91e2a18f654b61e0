"""Tests for models.sms_text: GSM 03.38 encoding choice, lengths, splitting."""

from __future__ import annotations

import pickle
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.sms_text import (
    _BASIC_TABLE,
    _EXTENSION_TABLE,
    GSM7_BASIC,
    GSM7_CHARS,
    GSM7_EXTENSION,
    PART_LIMIT,
    SINGLE_LIMIT,
    Encoding,
    SmsText,
    TextError,
    TextTooLong,
    analyze,
    gsm7_length,
    is_gsm7,
    non_gsm7_chars,
    part_length,
    split,
    ucs2_length,
)

EMOJI = "\U0001f600"  # 😀, outside the BMP: a surrogate pair in UTF-16
GSM7 = Encoding.GSM7
UCS2 = Encoding.UCS2


def reference_cost(char: str, encoding: Encoding) -> int:
    """Cost of one character, straight from the definitions, for comparisons."""
    if encoding is GSM7:
        assert char in GSM7_CHARS
        return 2 if char in GSM7_EXTENSION else 1
    return 2 if ord(char) > 0xFFFF else 1


# --- the table -------------------------------------------------------------


def test_basic_table_is_the_spec_layout() -> None:
    assert len(_BASIC_TABLE) == 128
    assert len(set(_BASIC_TABLE)) == 128
    # Spot checks of the code points people get wrong.
    assert _BASIC_TABLE[0x00] == "@"
    assert _BASIC_TABLE[0x02] == "$"
    assert _BASIC_TABLE[0x09] == "Ç"
    assert _BASIC_TABLE[0x0A] == "\n"
    assert _BASIC_TABLE[0x0D] == "\r"
    assert _BASIC_TABLE[0x11] == "_"
    assert _BASIC_TABLE[0x1B] == "\x1b"
    assert _BASIC_TABLE[0x24] == "¤"
    assert _BASIC_TABLE[0x40] == "¡"
    assert _BASIC_TABLE[0x5F] == "§"
    assert _BASIC_TABLE[0x60] == "¿"
    assert _BASIC_TABLE[0x7F] == "à"
    greek = "ΔΦΓΛΩΠΨΣΘΞ"
    for char in greek:
        assert unicodedata.name(char).startswith("GREEK CAPITAL LETTER"), char
        assert char in GSM7_BASIC
    assert "\x1b" not in GSM7_CHARS  # the escape is not a character


def test_extension_table() -> None:
    assert set(_EXTENSION_TABLE.values()) == set("^{}\\[~]|€\f")
    assert not GSM7_BASIC & GSM7_EXTENSION


@pytest.mark.parametrize(
    "code", range(1, 128)
)  # NUL is refused: test_a_nul_character_is_not_sendable
def test_every_ascii_character_is_classified(code: int) -> None:
    # Pins the fast path's regex to the table: for ASCII, analyze must agree
    # with the plain set-membership definition.
    char = chr(code)
    result = analyze(char)
    if char in GSM7_CHARS:
        assert result.encoding is GSM7
        assert result.length == reference_cost(char, GSM7)
    else:
        assert result.encoding is UCS2
        assert result.length == 1
        assert non_gsm7_chars(char) == [char]


def test_ascii_that_is_not_gsm7() -> None:
    assert not is_gsm7("`")
    assert not is_gsm7("\t")
    assert analyze("a`b").encoding is UCS2
    assert analyze("a\tb").encoding is UCS2


# --- lengths and encodings -------------------------------------------------


def test_accents_in_the_table_stay_gsm7() -> None:
    text = "café è ù ì ò Ç Ø ø Å å Æ æ ß É Ä Ö Ñ Ü § ¿ ä ö ñ ü à ¡ £ ¥ ¤ @ $ _ Δ Ω"
    result = analyze(text)
    assert result.encoding is GSM7
    assert result.length == len(text)
    assert result.dcs == 0


def test_accent_outside_the_table_forces_ucs2() -> None:
    result = analyze("olá")
    assert result.encoding is UCS2
    assert result.length == 3
    assert result.dcs == 8
    assert non_gsm7_chars("olá, ça va, á") == ["á", "ç"]


def test_extension_characters_cost_two_septets() -> None:
    assert gsm7_length("€") == 2
    assert gsm7_length("a{b}c") == 7
    assert gsm7_length("^{}\\[~]|€\f") == 20
    assert analyze("price: 5€").length == 10


def test_gsm7_length_rejects_non_gsm7() -> None:
    with pytest.raises(ValueError, match=r"U\+00E1"):
        gsm7_length("á")


def test_ucs2_length_counts_utf16_units() -> None:
    assert ucs2_length("abc") == 3
    assert ucs2_length("жук") == 3
    assert ucs2_length(EMOJI) == 2
    assert ucs2_length("a" + EMOJI + "b") == 4
    assert ucs2_length("\ud800") == 1  # a lone surrogate does not raise
    assert analyze(EMOJI).length == 2


def test_part_length() -> None:
    assert part_length("a€", GSM7) == 3
    assert part_length("a€", UCS2) == 2
    assert part_length(EMOJI, UCS2) == 2


# --- single SMS vs concatenated, at the edges -------------------------------


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (153 * 7, 7), (153 * 7 + 1, 8)],
)
def test_gsm7_edges(length: int, segments: int) -> None:
    result = analyze("a" * length)
    assert result.encoding is GSM7
    assert result.length == length
    assert result.segments == segments
    if segments > 1:
        assert all(len(p) == 153 for p in result.parts[:-1])


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (67 * 7, 7), (67 * 7 + 1, 8)],
)
def test_ucs2_edges(length: int, segments: int) -> None:
    result = analyze("ж" * length)
    assert result.encoding is UCS2
    assert result.length == length
    assert result.segments == segments
    if segments > 1:
        assert all(len(p) == 67 for p in result.parts[:-1])


def test_extension_characters_count_towards_the_single_limit() -> None:
    assert analyze("a" * 158 + "€").segments == 1  # 160 septets
    assert analyze("a" * 159 + "€").segments == 2  # 161 septets


def test_extension_character_at_a_part_edge_moves_whole() -> None:
    text = "a" * 152 + "€" + "b" * 10
    result = analyze(text)
    assert result.length == 164
    assert result.parts == ("a" * 152, "€" + "b" * 10)
    assert part_length(result.parts[0], GSM7) == 152


def test_extension_character_just_fitting_stays() -> None:
    text = "a" * 151 + "€" + "b" * 10
    assert analyze(text).parts == ("a" * 151 + "€", "b" * 10)


def test_emoji_at_a_part_edge_moves_whole() -> None:
    text = "a" * 66 + EMOJI + "b" * 10
    result = analyze(text)
    assert result.encoding is UCS2
    assert result.length == 78
    assert result.parts == ("a" * 66, EMOJI + "b" * 10)


def test_emoji_just_fitting_stays() -> None:
    text = "a" * 65 + EMOJI + "b" * 10
    assert analyze(text).parts == ("a" * 65 + EMOJI, "b" * 10)


def test_all_double_characters() -> None:
    result = analyze("€" * 100)
    assert result.length == 200
    assert [len(p) for p in result.parts] == [76, 24]  # 153 is odd: 76 * 2 = 152


def test_split_directly() -> None:
    assert split("", GSM7) == []
    assert split("hello", GSM7) == ["hello"]
    assert split("a" * 161, GSM7) == ["a" * 153, "a" * 8]
    assert split("a" * 71, UCS2) == ["a" * 67, "a" * 4]
    with pytest.raises(ValueError):
        split("á" * 200, GSM7)


# --- rejections -------------------------------------------------------------


def test_empty_text() -> None:
    with pytest.raises(TextError, match=r"^text: must not be empty$") as info:
        analyze("")
    assert info.value.field == "text"
    assert info.value.length == 0


def test_too_long_gsm7() -> None:
    analyze("a" * 153 * 10)  # exactly 10 parts is fine
    with pytest.raises(TextTooLong) as info:
        analyze("a" * (153 * 10 + 1))
    error = info.value
    assert isinstance(error, TextError)
    assert isinstance(error, ValueError)
    assert (error.length, error.encoding, error.parts, error.max_parts) == (1531, GSM7, 11, 10)
    assert error.offending == ()
    message = str(error)
    assert message.startswith("text: ")
    for needle in ("1531", "GSM-7", "11 parts", "maximum of 10"):
        assert needle in message


def test_too_long_ucs2_names_the_offending_characters() -> None:
    text = "á" + "a" * 300 + "ç" + "á" * 300 + EMOJI + "`" * 100
    with pytest.raises(TextTooLong) as info:
        analyze(text)
    error = info.value
    assert error.encoding is UCS2
    assert error.length == 704
    assert error.parts == 11
    assert error.offending == ("á", "ç", EMOJI, "`")
    message = str(error)
    for needle in ("704", "UCS-2", "11 parts", "maximum of 10", "'á' (U+00E1)", "U+1F600"):
        assert needle in message


def test_offending_characters_are_capped() -> None:
    text = "".join(chr(0x0430 + i) for i in range(30)) * 30  # 900 Cyrillic chars
    with pytest.raises(TextTooLong) as info:
        analyze(text)
    assert len(info.value.offending) == 8
    assert "and 22 more" in str(info.value)


def test_moved_pair_can_add_a_part() -> None:
    # 1530 septets is 10 * 153, but the € at position 152 cannot straddle
    # parts, so the text needs 11 parts.
    text = "a" * 152 + "€" + "a" * (153 * 9 - 1)
    assert gsm7_length(text) == 1530
    with pytest.raises(TextTooLong) as info:
        analyze(text)
    assert info.value.parts == 11
    assert analyze(text, max_parts=11).segments == 11


def test_custom_max_parts() -> None:
    with pytest.raises(TextTooLong):
        analyze("a" * 161, max_parts=1)
    assert analyze("a" * 160, max_parts=1).segments == 1
    assert analyze("a" * 161, max_parts=2).segments == 2
    assert analyze("a" * 153 * 20, max_parts=20).segments == 20
    with pytest.raises(TextTooLong) as info:
        analyze("ж" * 135, max_parts=2)
    assert (info.value.parts, info.value.max_parts) == (3, 2)


@pytest.mark.parametrize("max_parts", [0, -1])
def test_max_parts_must_be_positive(max_parts: int) -> None:
    with pytest.raises(ValueError, match="max_parts"):
        analyze("hi", max_parts=max_parts)


def test_error_survives_pickling() -> None:
    with pytest.raises(TextTooLong) as info:
        analyze("á" * 700)
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is TextTooLong
    assert str(copy) == str(info.value)
    assert (copy.length, copy.encoding, copy.parts, copy.max_parts, copy.offending) == (
        700,
        UCS2,
        11,
        10,
        ("á",),
    )


def test_sms_text_is_frozen() -> None:
    result = analyze("hello")
    assert result == SmsText("hello", GSM7, 5, ("hello",))
    with pytest.raises(AttributeError):
        result.length = 3  # type: ignore[misc]


# --- properties -------------------------------------------------------------

gsm_alphabet = st.text(
    alphabet=st.one_of(
        st.sampled_from(sorted(GSM7_BASIC)),
        st.sampled_from(sorted(GSM7_EXTENSION)),
    ),
    max_size=700,
)
# Mostly short ASCII with some emoji and accents, to hit UCS-2 part edges.
mixed_alphabet = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=1, max_codepoint=0x7F),
        st.sampled_from(["€", "á", "ж", EMOJI, "\U0001f44d", "é"]),
    ),
    max_size=700,
)
# NUL is refused (test_a_nul_character_is_not_sendable).
any_text = st.one_of(
    st.text(st.characters(blacklist_characters="\x00"), max_size=300), gsm_alphabet, mixed_alphabet
)


def check_invariants(text: str, result: SmsText) -> None:
    encoding = result.encoding
    assert result.text == text
    assert "".join(result.parts) == text
    assert all(result.parts)
    assert (encoding is GSM7) == is_gsm7(text) == all(c in GSM7_CHARS for c in text)
    costs = [reference_cost(c, encoding) for c in text]
    assert result.length == sum(costs)
    assert (result.segments == 1) == (result.length <= SINGLE_LIMIT[encoding])
    if result.segments == 1:
        return
    limit = PART_LIMIT[encoding]
    lengths = [part_length(p, encoding) for p in result.parts]
    assert all(n <= limit for n in lengths)
    assert sum(lengths) == result.length
    # Greedy: a part ends only when the next character does not fit.
    for part, following, n in zip(result.parts, result.parts[1:], lengths, strict=False):
        assert n + reference_cost(following[0], encoding) > limit, part


@settings(max_examples=300, deadline=None)
@given(any_text)
def test_analyze_properties(text: str) -> None:
    if not text:
        with pytest.raises(TextError):
            analyze(text)
        return
    check_invariants(text, analyze(text, max_parts=1000))


@settings(deadline=None)
@given(any_text, st.integers(min_value=1, max_value=5))
def test_max_parts_property(text: str, max_parts: int) -> None:
    if not text:
        return
    unlimited = analyze(text, max_parts=1000)
    if unlimited.segments <= max_parts:
        assert analyze(text, max_parts=max_parts) == unlimited
    else:
        with pytest.raises(TextTooLong) as info:
            analyze(text, max_parts=max_parts)
        assert info.value.parts == unlimited.segments
        assert info.value.length == unlimited.length
        assert info.value.encoding is unlimited.encoding
        assert info.value.offending == tuple(non_gsm7_chars(text)[:8])


@given(any_text)
def test_split_agrees_with_analyze(text: str) -> None:
    if not text:
        return
    result = analyze(text, max_parts=1000)
    assert split(text, result.encoding) == list(result.parts)
    if result.encoding is GSM7:
        # A GSM-7 text may also be sent as UCS-2; splitting it that way works.
        assert "".join(split(text, UCS2)) == text


def test_encoding_given_as_plain_string() -> None:
    # Values read back from the messages.encoding column are plain strings.
    assert part_length("a€", "gsm7") == 3  # type: ignore[arg-type]
    assert split("a" * 161, "gsm7") == ["a" * 153, "a" * 8]  # type: ignore[arg-type]
    assert SmsText("a", "gsm7", 1, ("a",)).dcs == 0  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        part_length("a", "utf8")  # type: ignore[arg-type]


def test_a_nul_character_is_not_sendable() -> None:
    # Regression (fuzz): U+0000 reached PostgreSQL, which refuses it.
    with pytest.raises(TextError, match="NUL"):
        analyze("Hi\x00there")
