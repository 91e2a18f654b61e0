"""Writing campaign messages, a chunk at a time.

Two writers of the same interface:

- :class:`CopyWriter` -- PostgreSQL with psycopg 3: ``COPY ... FROM STDIN``
  in the session's transaction, the rows formatted here as COPY text (the
  campaign-wide columns are formatted once, the per-row ones are a few
  f-string fields). It bypasses SQLAlchemy's types, so datetimes are written
  as the naive UTC that ``models.tables.UTCDateTime`` stores.
- :class:`CoreWriter` -- any other database (SQLite): Core ``executemany``.

No event row is written for a message's first status: a campaign message's
initial ``queued``/``scheduled``/``suppressed`` is implied by the row itself
(see ``producer.campaign_history.implied_first_event``). An event per message was
about 40 % of the database's work in ingestion.

Each writer says how many rows it takes per chunk (one ``COPY`` and one
commit). ``COPY`` gains up to about 10,000 rows (fewer commits and round
trips; see ``docs/performance.md``); SQLite's ``executemany`` gains nothing
past a thousand, and small chunks keep the tests quick. Measurements:
``docs/performance.md`` (campaign CSV ingestion).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import String, Table, any_, literal, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from models.ledger import copy_campaign_rows, first_columns, insert_campaign_rows
from models.status import MessageKind, MessageStatus
from models.tables import Message, Suppression
from producer.routing import Destination

MESSAGES: Table = Message.__table__  # type: ignore[assignment]

# One message of a chunk: id, to, text, encoding, segments, status, and its
# destination: an index into Shared.destinations (its provider and route).
Row = tuple[str, str, str, str, int, str, int]

# The first statuses a campaign message is written with (``accepted``: the
# held first message, see producer.campaign_ingestion).
_FIRST_STATUSES = (
    MessageStatus.ACCEPTED,
    MessageStatus.QUEUED,
    MessageStatus.SCHEDULED,
    MessageStatus.SUPPRESSED,
)


def _first_columns(now: dt.datetime) -> dict[str, dict[str, Any]]:
    """The ledger's status columns of each first status, looked up per row."""
    return {status.value: first_columns(status, now) for status in _FIRST_STATUSES}


# Per-row columns first, then the ones every message of the campaign shares.
_ROW_COLUMNS = ("id", "to", "text", "encoding", "segments", "status", "finished_at")
_SHARED_COLUMNS = (
    "sender",
    "kind",
    "campaign_id",
    "provider",
    "route",
    "attempts",
    "stop_list",
    "flash",
    "client_id",
    "send_at",
    "was_scheduled",
    "expires_at",
    "parts_sent",
    "unknown_resends",
    "created_at",
    "updated_at",
)


@dataclass(frozen=True, slots=True)
class Shared:
    """What every message of one campaign has in common, with the few
    destinations (provider and route, ``producer.routing``) its rows pick from."""

    campaign_id: str
    destinations: tuple[Destination, ...]
    sender: str | None
    send_at: dt.datetime | None
    scheduled: bool  # send_at beyond the scheduling horizon: stored as was_scheduled
    expires_at: dt.datetime
    now: dt.datetime

    def values(self, destination: Destination) -> dict[str, Any]:
        return {
            "sender": self.sender,
            "kind": MessageKind.CAMPAIGN.value,
            "campaign_id": self.campaign_id,
            "provider": destination.provider,
            "route": destination.route,
            "attempts": 0,
            "stop_list": True,
            "flash": False,
            "client_id": "",
            "send_at": self.send_at,
            "was_scheduled": self.scheduled,
            "expires_at": self.expires_at,
            "parts_sent": 0,
            "unknown_resends": 0,
            "created_at": self.now,
            "updated_at": self.now,
        }


class BulkWriter(Protocol):
    """Writes one chunk: :meth:`prepare` runs in the reading thread (it is
    Python work, which the writing thread would do holding the GIL while the
    reader waits), :meth:`write` in the writing thread (mostly waiting for
    the database, the GIL released)."""

    rows_per_chunk: int

    def stop_listed(self, session: Session, numbers: list[str]) -> set[str]:
        """Which of ``numbers`` are on the stop list (one query)."""

    def prepare(self, rows: list[Row]) -> Any:
        """The rows in the form :meth:`write` sends."""

    def write(self, session: Session, prepared: Any) -> None:
        """Insert the messages (no events: their first status is implied)."""


# A stop list up to this size is read once per ingestion and checked in
# memory (~7 MB at most); a larger one is queried for each chunk.
PRELOAD_STOP_LIST = 100_000


def load_stop_list(session: Session) -> frozenset[str] | None:
    """The whole stop list, or None when it is too large to hold.

    Most stop lists are small, and a 10,000-number ``= ANY(array)`` query per
    chunk cost ~1 µs a row (adapting the array, parsing it server-side), so
    ingestion reads the list once, before the first row, when it has at most
    :data:`PRELOAD_STOP_LIST` numbers, and checks each row in memory; a
    larger list is queried per chunk (:meth:`BulkWriter.stop_listed`). Either
    way a number added while an upload is being read may miss rows checked
    before, as a send that raced the addition would.
    """
    query = select(Suppression.number).limit(PRELOAD_STOP_LIST + 1)
    found = session.scalars(query).all()
    return frozenset(found) if len(found) <= PRELOAD_STOP_LIST else None


def writer_for(session: Session, shared: Shared) -> BulkWriter:
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        return CopyWriter(shared)
    return CoreWriter(shared)


class CoreWriter:
    """Core ``executemany``, for any database SQLAlchemy speaks."""

    rows_per_chunk = 1000

    def __init__(self, shared: Shared) -> None:
        self.shared = [shared.values(d) for d in shared.destinations]
        self.now = shared.now

    def stop_listed(self, session: Session, numbers: list[str]) -> set[str]:
        query = select(Suppression.number).where(Suppression.number.in_(numbers))
        return set(session.scalars(query))

    def prepare(self, rows: list[Row]) -> list[dict[str, Any]]:
        shared, first = self.shared, _first_columns(self.now)
        return [
            dict(
                shared[dest],
                id=mid,
                to=to,
                text=text,
                encoding=encoding,
                segments=segments,
                **first[status],
            )
            for mid, to, text, encoding, segments, status, dest in rows
        ]

    def write(self, session: Session, prepared: list[dict[str, Any]]) -> None:
        insert_campaign_rows(session, prepared)


class CopyWriter:
    """PostgreSQL ``COPY`` of preformatted text rows (psycopg 3)."""

    rows_per_chunk = 10_000

    def __init__(self, shared: Shared) -> None:
        self._shared = [
            "\t".join(_copy_value(values[c]) for c in _SHARED_COLUMNS)
            for values in (shared.values(d) for d in shared.destinations)
        ]
        self._finished_at = {
            status: _copy_value(columns["finished_at"])
            for status, columns in _first_columns(shared.now).items()
        }
        self._messages_sql = _copy_sql(MESSAGES, (*_ROW_COLUMNS, *_SHARED_COLUMNS))

    def stop_listed(self, session: Session, numbers: list[str]) -> set[str]:
        # One array parameter: an IN list of a thousand binds costs more to
        # render and parse than the lookup itself.
        query = select(Suppression.number).where(
            Suppression.number == any_(literal(numbers, ARRAY(String)))
        )
        return set(session.scalars(query))

    def prepare(self, rows: list[Row]) -> str:
        esc, shared, finished_at = _COPY_ESCAPES, self._shared, self._finished_at
        return "".join(
            [
                f"{mid}\t{to}\t{text.translate(esc)}\t{encoding}\t{segments}\t{status}\t"
                f"{finished_at[status]}\t{shared[dest]}\n"
                for mid, to, text, encoding, segments, status, dest in rows
            ]
        )

    def write(self, session: Session, prepared: str) -> None:
        copy_campaign_rows(session, self._messages_sql, prepared)


# --- ids ------------------------------------------------------------------------

# The variant bits (10xx) on a random hex digit: keeps its two low bits.
_VARIANT = {f"{n:x}": f"{0x8 | (n & 0x3):x}" for n in range(16)}


def new_ids(count: int) -> list[str]:
    """``count`` UUIDv7 strings, as ``models.ids.new_id`` makes them, in bulk.

    ``new_id`` costs ~2.3 µs (a system call for 10 random bytes, a UUID
    object); here one ``os.urandom`` serves the whole chunk and the string is
    sliced out of its hex: ~0.5 µs an id. The same layout (RFC 9562): 48
    bits of milliseconds, version 7, 12 + 62 random bits, variant 10. The
    ids of one call share their millisecond.
    """
    ms = f"{time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF:012x}"
    head = f"{ms[:8]}-{ms[8:]}-7"
    rand = os.urandom(10 * count).hex()  # 20 hex digits an id, 80 bits: 74 used
    variant = _VARIANT
    return [
        f"{head}{r[1:4]}-{variant[r[4]]}{r[5:8]}-{r[8:]}"
        for r in [rand[i : i + 20] for i in range(0, 20 * count, 20)]
    ]


# --- COPY text format ------------------------------------------------------------

NULL = "\\N"
# Inside a value a backslash, newline, carriage return or tab (the delimiter)
# must be escaped; nothing else (NUL cannot reach here: texts are checked).
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _copy_value(value: object) -> str:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dt.datetime):
        # messages' times are naive UTC on disk (models.tables.UTCDateTime).
        return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ")
    return str(value).translate(_COPY_ESCAPES)


def _copy_sql(table: Table, columns: Sequence[str]) -> str:
    names = ", ".join(f'"{name}"' for name in columns)
    return f'COPY "{table.name}" ({names}) FROM STDIN'
