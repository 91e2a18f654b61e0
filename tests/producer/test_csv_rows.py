from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from producer.csv_rows import (
    EMPTY_ROW,
    NOT_UTF8,
    UNCLOSED,
    BadRow,
    iter_file_chunks,
    read_csv_rows,
)
from producer.errors import InvalidField

Item = dict[str, str] | BadRow


def read(data: bytes, *, size: int | None = None, phone_column: str = "phone") -> list[Item]:
    chunks = [data] if size is None else [data[i : i + size] for i in range(0, len(data), size)]
    return list(read_csv_rows(chunks, phone_column=phone_column))


def every_split(data: bytes) -> Iterator[list[bytes]]:
    """The data in two chunks cut at every byte, and in chunks of 1..7 bytes."""
    for cut in range(len(data) + 1):
        yield [data[:cut], data[cut:]]
    for size in range(1, 8):
        yield [data[i : i + size] for i in range(0, len(data), size)]


MIXED = (
    "\ufeffphone,name,city\r\n"
    '+491701234567,"Ünal, the ""best""",Köln\r\n'
    '+491701234568,"two\r\nlines",Zürich 😀\r\n'
    "\r\n"
    "+491701234569,Ann\r\n"
    ",,\r\n"
    "+491701234570,Bea,Bonn,extra\r\n"
    "+491701234571,Zoë,Graz"  # no final line end
).encode()
MIXED_ROWS: list[Item] = [
    {"phone": "+491701234567", "name": 'Ünal, the "best"', "city": "Köln"},
    {"phone": "+491701234568", "name": "two\r\nlines", "city": "Zürich 😀"},
    BadRow(EMPTY_ROW, ""),
    BadRow("expected 3 columns, found 2", "+491701234569,Ann"),
    BadRow(EMPTY_ROW, ""),
    BadRow("expected 3 columns, found 4", "+491701234570,Bea,Bonn,extra"),
    {"phone": "+491701234571", "name": "Zoë", "city": "Graz"},
]


def test_rows_come_out_as_fields_or_as_bad_rows_in_order() -> None:
    assert read(MIXED) == MIXED_ROWS


def test_chunks_may_be_cut_anywhere() -> None:
    """Inside the BOM, a multi-byte character, a quoted field with a line end, a CRLF."""
    for chunks in every_split(MIXED):
        assert list(read_csv_rows(chunks)) == MIXED_ROWS, [len(c) for c in chunks]


def test_latin1_rows_among_utf8_rows_are_rejected_alone() -> None:
    data = (
        "phone,name\n+491701234567,Jürgen\n".encode()
        + "+491701234568,Jürgen\n".encode("latin-1")
        + "+491701234569,Zoë\n".encode()
        + "+491701234570,Öztürk\n".encode("latin-1")
    )
    expected: list[Item] = [
        {"phone": "+491701234567", "name": "Jürgen"},
        BadRow(NOT_UTF8, "+491701234568"),
        {"phone": "+491701234569", "name": "Zoë"},
        BadRow(NOT_UTF8, "+491701234570"),
    ]
    assert read(data) == expected
    for chunks in every_split(data):
        assert list(read_csv_rows(chunks)) == expected


def test_an_entirely_latin1_file_keeps_its_ascii_rows() -> None:
    text = "phone,name\n+491701234567,Muller\n+491701234568,Müller\n\n+491701234569,Zoë,x\n"
    expected: list[Item] = [
        {"phone": "+491701234567", "name": "Muller"},
        BadRow(NOT_UTF8, "+491701234568"),
        BadRow(EMPTY_ROW, ""),
        BadRow(NOT_UTF8, "+491701234569,Zo\ufffd,x"),  # wrong width: the row is shown
    ]
    assert read(text.encode("latin-1")) == expected
    assert read(text.encode("latin-1"), size=3) == expected


def test_a_non_ascii_header_in_latin1_is_refused() -> None:
    with pytest.raises(InvalidField) as exc:
        read("phone,straße\n+491701234567,x\n".encode("latin-1"))
    assert exc.value.field == "file"
    assert "header row is not valid UTF-8" in exc.value.reason


def test_a_header_without_the_phone_column_names_it_and_the_columns_found() -> None:
    with pytest.raises(InvalidField) as exc:
        read(b"number,name\n+491701234567,Ann\n", phone_column="phone")
    assert exc.value.field == "file"
    assert exc.value.reason == "no column 'phone' in the header row (columns: 'number', 'name')"


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\r\n\n", b",,\n"])
def test_a_file_without_a_header_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidField) as exc:
        read(data)
    assert exc.value.reason == "empty file: no header row"


def test_header_names_are_trimmed_and_another_phone_column_can_be_chosen() -> None:
    rows = read(b" msisdn , name\r\n+491701234567,Ann\r\n", phone_column="msisdn")
    assert rows == [{"msisdn": "+491701234567", "name": "Ann"}]


def test_blank_lines_before_the_header_are_skipped() -> None:
    assert read(b"\n\r\nphone\n+491701234567\n") == [{"phone": "+491701234567"}]


def test_a_header_only_file_has_no_rows() -> None:
    assert read(b"phone,name\r\n") == []


def test_whitespace_only_rows_are_empty() -> None:
    assert read(b"phone,name\n  , \n") == [BadRow(EMPTY_ROW, "")]


def test_a_quote_never_closed_is_one_bad_row_at_the_end() -> None:
    data = b'phone,name\n+491701234566,Al\n+491701234567,"Ann\n+491701234568,Bob\n'
    expected: list[Item] = [
        {"phone": "+491701234566", "name": "Al"},
        BadRow(UNCLOSED, '+491701234567,"Ann\n+491701234568,Bob'),
    ]
    assert read(data) == expected
    for chunks in every_split(data):
        assert list(read_csv_rows(chunks)) == expected


def test_a_row_too_long_to_be_a_recipient_stops_the_file() -> None:
    data = b'phone,name\n+491701234567,"' + b"x\n" * 600_000
    with pytest.raises(InvalidField) as exc:
        read(data, size=1 << 16)
    assert "longer than" in exc.value.reason


def test_iter_file_chunks_reads_the_whole_file_in_pieces() -> None:
    data = bytes(range(256)) * 10
    chunks = list(iter_file_chunks(io.BytesIO(data), size=1000))
    assert [len(c) for c in chunks] == [1000, 1000, 560]
    assert b"".join(chunks) == data


def test_rows_are_streamed_not_read_ahead() -> None:
    """The reader asks for the next chunk only when it needs it."""
    consumed = [0]

    def chunks() -> Iterator[bytes]:
        yield b"phone\n"
        for i in range(1000):
            consumed[0] = i + 1
            yield f"+49170{i:07d}\n".encode()

    rows = read_csv_rows(chunks())
    assert next(rows) == {"phone": "+491700000000"}
    assert consumed[0] <= 2
