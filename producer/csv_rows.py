"""Reading a recipient CSV as a stream of rows, each row checked on its own.

An upload arrives as byte chunks cut anywhere: inside a row, inside a quoted
field, inside a multi-byte character. :func:`read_csv_rows` holds one chunk
plus the row it cuts, never the file, and yields one item per data row, in
order, so the caller's row numbers are the file's data-row numbers (1-based,
header not counted):

- the row's fields as a ``dict`` (header name -> cell), or
- a :class:`BadRow` when the row cannot be read as fields: an empty row, a
  row that is not valid UTF-8, a row with the wrong number of columns, a row
  the csv module refuses. The rest of the file is still read: one broken row
  does not reject a list.

Why bytes are cut into rows before decoding: a list exported from one system
and appended to in another often has a few Latin-1 rows among UTF-8 ones.
Decoding the stream as a whole would fail (or silently garble) all of it;
cutting first lets exactly those rows be reported. Cutting bytes is safe
because the delimiter, the quote and the line ends are ASCII, and no byte of
a UTF-8 multi-byte sequence is ASCII. A quoted field may hold a line end, so
a line end only ends a row when the quotes before it are balanced (``""``
inside a quoted field counts twice). As in RFC 4180, a cell containing a
quote must be quoted: a stray quote in an unquoted cell joins rows until the
next one.

Speed (a million rows per upload): a block of whole rows is decoded at once
and parsed by the C ``csv`` module; a block with an undecodable byte is
decoded with ``surrogateescape`` so only its broken rows take a slower path.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import IO

from producer.errors import InvalidField

FIELD = "file"  # the request field errors are reported against
BOM = b"\xef\xbb\xbf"
# A row longer than this is not a recipient: most likely a quote that is never
# closed, which would otherwise swallow the rest of the file into one "row".
MAX_ROW_BYTES = 1 << 20

EMPTY_ROW = "empty row"
NOT_UTF8 = "not valid UTF-8"
UNCLOSED = "a quoted field is not closed (the rest of the file is this row)"
VALUE_SHOWN = 100  # characters of a row shown when its phone cell is unknown


@dataclass(frozen=True, slots=True)
class BadRow:
    """A data row that could not be read as fields; counted as rejected."""

    reason: str
    value: str  # the phone cell when it could be found, else the row as text


def iter_file_chunks(fileobj: IO[bytes], size: int = 1 << 16) -> Iterator[bytes]:
    """The contents of a binary file, ``size`` bytes at a time."""
    while chunk := fileobj.read(size):
        yield chunk


def read_csv_rows(
    chunks: Iterable[bytes], *, phone_column: str = "phone"
) -> Iterator[dict[str, str] | BadRow]:
    """Stream the data rows of a CSV given as byte chunks; see the module doc.

    Raises :class:`InvalidField` (field ``file``) when there is no header row,
    the header is not readable, or it lacks ``phone_column``: on the first
    ``next()``, before any row is yielded.
    """
    blocks = _blocks(chunks)
    header, rest = _read_header(blocks, phone_column)
    parse = _BlockParser(header, header.index(phone_column))
    for block in chain([rest], blocks) if rest else blocks:
        yield from parse(block)


# --- bytes into blocks of whole rows ---------------------------------------------


def _blocks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Blocks of whole rows, the BOM removed; each ends where a row ends (or
    at the end of the file, for a last row without a line end)."""
    carry = b""
    started = False
    for chunk in chunks:
        if not chunk:
            continue
        data = carry + chunk if carry else chunk
        if not started:
            if len(data) < len(BOM) and BOM.startswith(data):
                carry = data  # too short yet to tell whether it is a BOM
                continue
            started = True
            if data.startswith(BOM):
                data = data[len(BOM) :]
        cut = _after_last_row(data)
        if cut < 0:
            if len(data) > MAX_ROW_BYTES:
                raise InvalidField(
                    FIELD,
                    f"a row longer than {MAX_ROW_BYTES} bytes "
                    "(is a quoted field missing its closing quote?)",
                )
            carry = data
            continue
        carry = data[cut:]
        yield data[:cut]
    if not started and carry.startswith(BOM):
        carry = carry[len(BOM) :]
    if carry:
        yield carry


def _after_last_row(data: bytes) -> int:
    """The index just after the last line end that ends a row, or -1.

    Counting quotes is C speed; walking back line by line only happens when
    the data ends inside a quoted field.
    """
    end = data.rfind(b"\n")
    if end < 0:
        return -1
    unbalanced = data.count(b'"', 0, end) % 2 == 1
    while unbalanced:
        previous = data.rfind(b"\n", 0, end)
        if previous < 0:
            return -1
        if data.count(b'"', previous, end) % 2:
            unbalanced = False
        end = previous
    return end + 1


def _rows_of(text: str) -> tuple[list[str], str | None]:
    """``text`` (whole rows) split into rows, a quoted line end kept inside;
    and the rest of the file when a quote opened in it is never closed."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # after the final line end
    if '"' not in text:
        return lines, None
    rows: list[str] = []
    open_row: list[str] | None = None
    for line in lines:
        odd = line.count('"') % 2 == 1
        if open_row is not None:
            open_row.append(line)
            if odd:
                rows.append("\n".join(open_row))
                open_row = None
        elif odd:
            open_row = [line]
        else:
            rows.append(line)
    # Only the file's last block can end inside a quoted field.
    return rows, None if open_row is None else "\n".join(open_row)


# --- the header --------------------------------------------------------------------


def _read_header(blocks: Iterator[bytes], phone_column: str) -> tuple[list[str], bytes]:
    """The header's column names, and the rest of the block it was read from.

    Blank lines before the header are skipped.
    """
    for block in blocks:
        while block:
            first, block = _split_first_row(block)
            try:
                line = first.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidField(
                    FIELD, "the header row is not valid UTF-8 (save the file as UTF-8)"
                ) from None
            try:
                fields = next(csv.reader([line.rstrip("\r\n")], strict=False), [])
            except csv.Error as exc:
                raise InvalidField(FIELD, f"the header row is not a CSV row: {exc}") from None
            header = [name.strip() for name in fields]
            if not any(header):
                continue
            if phone_column not in header:
                found = ", ".join(repr(name) for name in header)
                raise InvalidField(
                    FIELD, f"no column {phone_column!r} in the header row (columns: {found})"
                )
            return header, block
    raise InvalidField(FIELD, "empty file: no header row")


def _split_first_row(block: bytes) -> tuple[bytes, bytes]:
    start = 0
    while (nl := block.find(b"\n", start)) >= 0:
        if block.count(b'"', 0, nl) % 2 == 0:
            return block[: nl + 1], block[nl + 1 :]
        start = nl + 1
    return block, b""


# --- rows into fields ----------------------------------------------------------------


class _BlockParser:
    """Turns a block of whole rows into dicts and :class:`BadRow` items."""

    def __init__(self, header: list[str], phone_at: int) -> None:
        self.header = header
        self.width = len(header)
        self.phone_at = phone_at

    def __call__(self, block: bytes) -> Iterator[dict[str, str] | BadRow]:
        try:
            text = block.decode("utf-8")
            clean = True
        except UnicodeDecodeError:
            # Undecodable bytes become lone surrogates, found again per row.
            text = block.decode("utf-8", "surrogateescape")
            clean = False
        rows, unclosed = _rows_of(text)
        yield from self._parse(rows, clean)
        if unclosed is not None:
            yield BadRow(UNCLOSED, unclosed[:VALUE_SHOWN])

    def _parse(self, rows: list[str], clean: bool) -> Iterator[dict[str, str] | BadRow]:
        reader = csv.reader(rows, strict=False)
        header, width = self.header, self.width
        while True:
            try:
                # Each item of `rows` is one whole row, so the reader takes
                # exactly one per row (reader.line_num is its position), also
                # after an error.
                for fields in reader:
                    if not clean and not _is_utf8(rows[reader.line_num - 1]):
                        yield self._undecodable(rows[reader.line_num - 1])
                    elif len(fields) == width and "".join(fields).strip():
                        yield dict(zip(header, fields, strict=True))
                    else:
                        yield self._misfit(fields)
                return
            except csv.Error as exc:
                row = rows[reader.line_num - 1]
                if clean or _is_utf8(row):
                    yield BadRow(f"not a CSV row: {exc}", row[:VALUE_SHOWN])
                else:
                    yield self._undecodable(row)

    def _misfit(self, fields: list[str]) -> BadRow:
        if not "".join(fields).strip():
            return BadRow(EMPTY_ROW, "")
        return BadRow(
            f"expected {self.width} columns, found {len(fields)}", self._phone_or_row(fields)
        )

    def _undecodable(self, row: str) -> BadRow:
        shown = row.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        try:
            fields = next(csv.reader([shown], strict=False), [])
        except csv.Error:
            fields = [shown]
        return BadRow(NOT_UTF8, self._phone_or_row(fields))

    def _phone_or_row(self, fields: list[str]) -> str:
        if len(fields) == self.width:
            return fields[self.phone_at]
        return ",".join(fields).rstrip("\r")[:VALUE_SHOWN]


def _is_utf8(row: str) -> bool:
    """False when ``row`` holds bytes that were not UTF-8 (as lone surrogates)."""
    if row.isascii():
        return True
    try:
        row.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
