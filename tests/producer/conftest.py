"""What the producer's tests share: a publisher that records what it was given
and what a worker would have found in the database at that moment."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.tables import Message, MessageEvent


@dataclass
class Call:
    ids: list[str]
    queue: str
    eta: dt.datetime | None
    # What a worker would find at that moment, read in a new session:
    # id -> (status, [event statuses]).
    visible: dict[str, tuple[str, list[str]]]


@dataclass
class RecordingEnqueuer:
    """Records what would have been enqueued, and what the DB showed then."""

    sessions: sessionmaker[Session]
    calls: list[Call] = field(default_factory=list)

    def send_messages(self, ids: list[str], *, queue: str, eta: dt.datetime | None = None) -> bool:
        with self.sessions() as session:
            rows = session.execute(select(Message.id, Message.status).where(Message.id.in_(ids)))
            visible = {mid: (status, event_statuses(session, mid)) for mid, status in rows}
        self.calls.append(Call(list(ids), queue, eta, visible))
        return True

    def start_campaign(self, campaign_id: str, *, eta: dt.datetime | None = None) -> bool:
        raise AssertionError("the producer never starts a campaign itself")


def event_statuses(session: Session, message_id: str) -> list[str]:
    return list(
        session.scalars(
            select(MessageEvent.status)
            .where(MessageEvent.message_id == message_id)
            .order_by(MessageEvent.id)
        )
    )


@pytest.fixture
def recorder(sessions: sessionmaker[Session]) -> RecordingEnqueuer:
    return RecordingEnqueuer(sessions)


@pytest.fixture
def events_of(session: Session) -> Callable[[str], list[str]]:
    """A message's event statuses, in order."""
    return lambda message_id: event_statuses(session, message_id)


# --- a providers file with routes (docs/routing.md) ---------------------------------

ROUTED_ACCOUNTS = """
[providers.panel]
adapter = "panelsms"
url = "http://127.0.0.1:8025/sendMtSms.php"
user = "demo@example.com"
api_key = "demo-panel-key"
sender = "SMSQ"

[providers.panel2]
adapter = "panelsms"
url = "http://127.0.0.1:8025/sendMtSms.php"
user = "second@example.com"
api_key = "second-panel-key"
sender = "SMSQ"

[providers.brand]
adapter = "brand"
url = "http://127.0.0.1:8025/brand/send"
key = "demo-brand-key"
brand_id = "SMSQ"
"""

# Order matters: the first route whose conditions hold wins.
ROUTES = """
[[routes]]
name = "otp-dach"
kinds = ["otp"]
countries = ["DE", "AT", "CH"]
accounts = ["brand", "panel"]

[[routes]]
name = "fr-mobile"
prefixes = ["+336", "+337"]
accounts = ["panel2", "panel"]

[[routes]]
name = "uk"
kinds = ["transactional", "campaign"]
countries = ["GB", "JE"]
accounts = ["panel2"]

[[routes]]
name = "bulk"
kinds = ["campaign"]
accounts = ["panel", "brand"]
weights = [70, 30]
"""


@pytest.fixture
def providers_file(tmp_path: Path) -> Callable[[str], Path]:
    """Write a providers file: the three accounts above and ``routes`` (TOML)."""

    def write(routes: str = ROUTES) -> Path:
        path = tmp_path / "providers.toml"
        path.write_text(ROUTED_ACCOUNTS + routes)
        return path

    return write
