from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.tables import Suppression
from producer.errors import InvalidField
from producer.receipts import RejectedRow
from producer.stoplist import (
    CHUNK,
    add_numbers,
    import_csv,
    is_listed,
    list_numbers,
    remove_number,
)


def listed(session: Session) -> dict[str, str]:
    return {s.number: s.reason for s in session.scalars(select(Suppression))}


def test_add_normalizes_and_reports_bad_numbers_by_position(session: Session) -> None:
    result = add_numbers(
        session,
        ["+49 170 1234567", "not a number", "0049 170 1234567", "+4915112345678"],
        reason="replied STOP",
    )
    assert (result.added, result.already, result.rejected) == (2, 1, 1)
    assert result.errors == [RejectedRow(2, "not a number", "not a phone number")]
    assert listed(session) == {"+491701234567": "replied STOP", "+4915112345678": "replied STOP"}


def test_adding_again_keeps_the_first_reason(session: Session) -> None:
    add_numbers(session, ["+491701234567"], reason="first")
    again = add_numbers(session, ["+49 170 1234567"], reason="second")
    assert (again.added, again.already) == (0, 1)
    assert listed(session) == {"+491701234567": "first"}


def test_a_reason_too_long_is_refused_before_anything_is_written(session: Session) -> None:
    with pytest.raises(InvalidField) as info:
        add_numbers(session, ["+491701234567"], reason="x" * 201)
    assert info.value.field == "reason"
    assert listed(session) == {}


def test_many_numbers_are_written_in_chunks(session: Session) -> None:
    numbers = [f"+4915550{i:06d}" for i in range(CHUNK + 5)]
    result = add_numbers(session, numbers + numbers[:3])
    assert (result.added, result.already, result.rejected) == (CHUNK + 5, 3, 0)
    assert session.scalar(select(func.count()).select_from(Suppression)) == CHUNK + 5


def test_only_the_first_errors_are_kept_but_all_are_counted(session: Session) -> None:
    result = add_numbers(session, ["x"] * 150)
    assert result.rejected == 150 and len(result.errors) == 100
    assert result.errors[-1].row == 100


def test_remove(session: Session) -> None:
    add_numbers(session, ["+491701234567"])
    assert is_listed(session, "0049 170 1234567")
    assert remove_number(session, "+49 170 1234567") is True
    assert remove_number(session, "+491701234567") is False
    assert not is_listed(session, "+491701234567")
    with pytest.raises(InvalidField) as info:
        remove_number(session, "hello")
    assert info.value.field == "number"


def test_list_pages_in_number_order(session: Session) -> None:
    add_numbers(session, ["+4915550000003", "+4915550000001", "+4915550000002"])
    first = list_numbers(session, limit=2)
    assert [s.number for s in first] == ["+4915550000001", "+4915550000002"]
    rest = list_numbers(session, limit=2, after=first[-1].number)
    assert [s.number for s in rest] == ["+4915550000003"]
    assert first[0].created_at.tzinfo is not None
    with pytest.raises(InvalidField):
        list_numbers(session, limit=0)


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 7, 1 << 16])
def test_import_csv_any_chunking(session: Session, size: int) -> None:
    data = (
        "\ufeffname,mobile\n"
        "Ann,+49 170 1234567\n"
        "Bob,nope\n"
        "Cy\n"
        "Dee,0049 170 1234567\n"
        "Eve,+4915112345678\n"
    ).encode()
    result = import_csv(session, chunked(data, size), column="mobile", reason="import")
    assert (result.added, result.already, result.rejected) == (2, 1, 2)
    assert [(e.row, e.reason) for e in result.errors] == [
        (2, "not a phone number"),
        (3, result.errors[1].reason),
    ]
    assert listed(session) == {"+491701234567": "import", "+4915112345678": "import"}


def test_import_csv_without_the_column_names_the_columns_found(session: Session) -> None:
    with pytest.raises(InvalidField) as info:
        import_csv(session, [b"name,mobile\nAnn,+491701234567\n"], column="phone")
    assert info.value.field == "file"
    assert "mobile" in info.value.reason
    assert listed(session) == {}
