"""The guard in tests/conftest.py that holds every status write to models/ledger/.

It watches every statement of the suite, so these tests show it would catch a
write from elsewhere: code compiled as if it lived in ``worker/`` writes a
status, and the guard names the file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, update
from sqlalchemy.orm import Session

from models.ledger import move_where
from models.status import EventSource
from models.status import MessageStatus as S
from models.tables import Message, MessageEvent, utcnow

ROOT = Path(__file__).resolve().parents[3]

WRITES = {
    "update status": (update(Message).values(status=S.QUEUED), True),
    "update finished_at": (update(Message).values(finished_at=utcnow()), True),
    "update sent_at": (update(Message).values(sent_at=utcnow()), True),
    "update a lease only": (update(Message).values(lease_until=None), False),
    "insert an event": (insert(MessageEvent).values(message_id="x", status="sent"), True),
}


def _run_as_if_in(path: Path, engine: Engine, statement: object) -> None:
    """Execute ``statement`` from a frame whose file is ``path``."""
    code = compile("with engine.begin() as conn:\n    conn.execute(statement)\n", str(path), "exec")
    exec(code, {"engine": engine, "statement": statement})


@pytest.mark.parametrize("name", list(WRITES))
def test_a_status_write_outside_the_ledger_is_caught(
    name: str, engine: Engine, ledger_guard_violations: list[str]
) -> None:
    statement, is_status_write = WRITES[name]
    # The insert of an event without its message may fail its foreign key: irrelevant.
    with contextlib.suppress(Exception):
        _run_as_if_in(ROOT / "worker" / "elsewhere.py", engine, statement)
    caught = list(ledger_guard_violations)
    ledger_guard_violations.clear()
    assert bool(caught) is is_status_write, caught
    if caught:
        assert caught[0].startswith("worker/elsewhere.py: ")


def test_the_same_write_through_the_ledger_passes(
    session: Session, make_message: Callable[..., Message], ledger_guard_violations: list[str]
) -> None:
    make_message(status=S.QUEUED)
    moved = move_where(session, S.CANCELLED, where=[], source=EventSource.OPERATOR, now=utcnow())
    session.commit()
    assert len(moved) == 1 and ledger_guard_violations == []
