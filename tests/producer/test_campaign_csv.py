"""A CSV upload end to end: read_csv_rows -> Producer.submit_campaign -> rows,
on SQLite and PostgreSQL; and the memory an upload takes."""

from __future__ import annotations

import datetime as dt
import gc
import resource
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.db import make_engine, make_sessionmaker
from models.tables import Campaign, Message, MessageEvent
from producer.api import Producer
from producer.csv_rows import iter_file_chunks, read_csv_rows
from producer.errors import InvalidField
from smsq.core.settings import Settings

NOW = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.UTC)


@dataclass
class Collecting:
    ids: list[str] = field(default_factory=list)

    def send_messages(self, ids: list[str], *, queue: str, eta: dt.datetime | None = None) -> bool:
        self.ids.extend(ids)
        return True

    def start_campaign(self, campaign_id: str, *, eta: dt.datetime | None = None) -> bool:
        return True


@pytest.fixture
def enqueued() -> Collecting:
    return Collecting()


@pytest.fixture
def producer(db_url: str, sessions: sessionmaker[Session], enqueued: Collecting) -> Producer:
    settings = Settings(database_url=db_url, max_parts=2)
    return Producer(settings, sessions, enqueued, clock=lambda: NOW)


UPLOAD = (
    "\ufeffphone,name\r\n".encode()
    + b"+491701000001,Ann\r\n"  # 1 ok
    + b"+49 170 1000002,Bob\r\n"  # 2 ok, written with spaces
    + b"+49 170 CALLME,Cy\r\n"  # 3 letters
    + b"\r\n"  # 4 empty
    + "+491701000005,Jürgen\r\n".encode("latin-1")  # 5 wrong encoding
    + b"0049 170 1000001,Ann again\r\n"  # 6 duplicate of row 1
    + b"+491701000007\r\n"  # 7 one column
    + b'"+491701000008","Dee, ""DJ"""\r\n'  # 8 ok, quoted
    + b"+44 20 7946 0958,\r\n"  # 9 ok: an empty name is a name
    + b"+12,Eve\r\n"  # 10 too short
    + "+491701000011,Zoë 😀\r\n".encode()  # 11 ok, UCS-2
    + b"+491701000002,Bob twice"  # 12 duplicate of row 2, no final line end
)
EXPECTED_ERRORS = [
    (3, "+49 170 CALLME", "not a phone number"),
    (4, "", "empty row"),
    (5, "+491701000005", "not valid UTF-8"),
    (6, "0049 170 1000001", "duplicate of row 1"),
    (7, "+491701000007", "expected 2 columns, found 1"),
    (10, "+12", "not a phone number"),
    (12, "+491701000002", "duplicate of row 2"),
]


@pytest.mark.parametrize("chunk_size", [1 << 16, 7])
def test_an_upload_accepts_the_good_rows_and_reports_the_bad_ones_exactly(
    producer: Producer, enqueued: Collecting, session: Session, chunk_size: int
) -> None:
    chunks = [UPLOAD[i : i + chunk_size] for i in range(0, len(UPLOAD), chunk_size)]
    receipt = producer.submit_campaign("csv", read_csv_rows(chunks), "Hi {name}!")

    assert (receipt.accepted, receipt.rejected, receipt.status) == (5, 7, "running")
    assert [(e.row, e.value, e.reason) for e in receipt.errors] == EXPECTED_ERRORS
    rows = {
        m.to: m
        for m in session.scalars(select(Message).where(Message.campaign_id == receipt.campaign_id))
    }
    assert {to: m.text for to, m in rows.items()} == {
        "+491701000001": "Hi Ann!",
        "+491701000002": "Hi Bob!",
        "+491701000008": 'Hi Dee, "DJ"!',
        "+442079460958": "Hi !",
        "+491701000011": "Hi Zoë 😀!",
    }
    assert rows["+491701000011"].encoding == "ucs2"
    assert {m.status for m in rows.values()} == {"queued"}
    assert sorted(enqueued.ids) == sorted(m.id for m in rows.values())
    stored = session.get_one(Campaign, receipt.campaign_id)
    assert (stored.accepted, stored.rejected) == (5, 7)


def test_a_header_without_the_phone_column_writes_nothing(
    producer: Producer, session: Session
) -> None:
    with pytest.raises(InvalidField) as exc:
        producer.submit_campaign(
            "csv", read_csv_rows([b"msisdn,name\n+491701000001,Ann\n"]), "Hi {name}"
        )
    assert exc.value.field == "file"
    assert "no column 'phone'" in exc.value.reason
    assert session.scalars(select(Campaign)).all() == []


def test_a_template_field_missing_from_the_header_rejects_every_row(producer: Producer) -> None:
    rows = read_csv_rows([b"phone\n+491701000001\n+491701000002\n"])
    receipt = producer.submit_campaign("csv", rows, "Hi {name}")
    assert (receipt.accepted, receipt.rejected, receipt.status) == (0, 2, "finished")
    assert {e.reason for e in receipt.errors} == {"missing template field 'name'"}


def test_an_uploaded_file_is_read_through_iter_file_chunks(
    producer: Producer, tmp_path: Path
) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(UPLOAD)
    with path.open("rb") as f:
        receipt = producer.submit_campaign(
            "file", read_csv_rows(iter_file_chunks(f, size=5)), "Hi {name}!"
        )
    assert [(e.row, e.value, e.reason) for e in receipt.errors] == EXPECTED_ERRORS


def test_ingestion_stores_no_event_for_the_first_status(
    producer: Producer, session: Session
) -> None:
    receipt = producer.submit_campaign("csv", read_csv_rows([UPLOAD]), "Hi {name}!")
    ids = session.scalars(select(Message.id).where(Message.campaign_id == receipt.campaign_id))
    assert len(list(ids)) == 5
    assert session.scalars(select(MessageEvent)).all() == []


# --- memory ------------------------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


@pytest.mark.integration
def test_a_large_upload_is_streamed_not_held_in_memory(postgres_url: str) -> None:
    """200,000 rows (~6 MB of CSV, far more as Python objects) in a small RSS growth.

    PostgreSQL only: the path built for large uploads, and several times
    faster than SQLite's (this test is about memory, not the database).
    """
    total = 200_000
    engine = make_engine(postgres_url)
    producer = Producer(
        Settings(database_url=postgres_url),
        make_sessionmaker(engine),
        Collecting(),
        clock=lambda: NOW,
    )

    def upload() -> Iterator[bytes]:
        yield b"phone,name\n"
        for start in range(0, total, 5000):
            yield "".join(
                f"+49170{i:07d},Person {i}\n" for i in range(start, start + 5000)
            ).encode()

    gc.collect()
    before = _rss_mb()
    receipt = producer.submit_campaign("big", read_csv_rows(upload()), "Hi {name}")
    growth = _rss_mb() - before
    engine.dispose()
    assert (receipt.accepted, receipt.rejected) == (total, 0)
    # What stays is one small entry per distinct number (duplicate detection):
    # ~100 bytes a row. Holding the rows would take several times this.
    assert growth < 100, f"RSS grew by {growth:.0f} MB"
