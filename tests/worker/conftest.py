"""A worker's sending context without a broker: the test's database, fakeredis
buckets, the simulator through MockTransport, and a publisher that records."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import httpx
import pytest
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.orm import Session

from models.db import make_sessionmaker
from models.status import MessageStatus
from models.tables import Message, MessageEvent
from providers.accounts import BrandAccount, PanelSmsAccount
from providers.base import Adapter
from providers.brand.adapter import BrandAdapter
from providers.panelsms.adapter import PanelSmsAdapter
from providers.simulator import SimConfig, Simulator, mock_transport
from worker.retry_policy import RetryPolicy
from worker.sending import SendContext
from worker.throttle import TokenBucket


@dataclass
class Clock:
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@dataclass
class Harness:
    ctx: SendContext
    sim: Simulator
    enqueued: Any  # tests/conftest.py RecordingPublisher
    clock: Clock
    buckets: dict[str, TokenBucket]
    rates: dict[str, tuple[float, int]]


@pytest.fixture
async def harness(engine: Engine, recording_publisher: Any) -> AsyncIterator[Harness]:
    sim = Simulator(SimConfig(seed=1, brand_callback_url=None))
    store = fakeredis.FakeRedis()
    rates: dict[str, tuple[float, int]] = {"panel": (10_000, 10_000), "brand": (10_000, 10_000)}
    buckets: dict[str, TokenBucket] = {}

    def bucket(provider: str) -> TokenBucket:
        rate, burst = rates[provider]
        if provider not in buckets or buckets[provider].rate != rate:
            buckets[provider] = TokenBucket(store, provider, rate=rate, burst=burst)
        return buckets[provider]

    panel = PanelSmsAccount(
        adapter="panelsms",
        name="panel",
        url="http://sim.test/sendMtSms.php",
        user="demo@example.com",
        api_key="demo-panel-key",
        sender="SMSQ",
    )
    brand = BrandAccount(
        adapter="brand",
        name="brand",
        url="http://sim.test/brand/send",
        key="demo-brand-key",
        brand_id="SMSQ",
        max_numbers=500,
    )
    adapters: dict[str, Adapter] = {
        "panel": PanelSmsAdapter(panel, public_url="http://smsq.test"),
        "brand": BrandAdapter(brand),
    }
    enqueued = recording_publisher
    clock = Clock()
    async with httpx.AsyncClient(transport=mock_transport(sim, sleep=False)) as client:
        ctx = SendContext(
            sessions=make_sessionmaker(engine),
            client=client,
            adapters=adapters,
            bucket=bucket,
            publisher=enqueued,
            policy=RetryPolicy(base=1.0, cap=60.0, max_attempts=5),
            lease=120,
            clock=clock,
            rng=random.Random(4),
        )
        yield Harness(ctx, sim, enqueued, clock, buckets, rates)


@pytest.fixture
def queued(make_message: Callable[..., Any]) -> Callable[..., list[Any]]:
    """``queued(n, **fields)``: n messages in ``queued``, ready to claim."""

    def factory(n: int = 1, **fields: Any) -> list[Any]:
        fields.setdefault("status", "queued")
        return [make_message(**fields) for _ in range(n)]

    return factory


# --- reading what the user sees: the rows as stored ------------------------------


@pytest.fixture
def stored(session: Session) -> Callable[[str], dict[str, Any]]:
    """``stored(id)``: the message's columns as the database holds them now
    (a Core read: the session's cached ``Message`` objects may be stale)."""
    table = Message.__table__

    def read(message_id: str) -> dict[str, Any]:
        query = select(table).where(table.c.id == message_id)
        return dict(session.execute(query).mappings().one())

    return read


@pytest.fixture
def events(session: Session) -> Callable[[str], list[dict[str, Any]]]:
    """``events(id)``: the message's ``message_events`` rows, oldest first."""

    def read(message_id: str) -> list[dict[str, Any]]:
        query = (
            select(
                MessageEvent.status,
                MessageEvent.source,
                MessageEvent.applied,
                MessageEvent.provider_code,
                MessageEvent.detail,
                MessageEvent.created_at,
            )
            .where(MessageEvent.message_id == message_id)
            .order_by(MessageEvent.id)
        )
        return [dict(row) for row in session.execute(query).mappings()]

    return read


# --- many rows at once, for the planner (PostgreSQL) -------------------------------

_SEED = """
INSERT INTO messages (id, "to", text, kind, campaign_id, provider, status, encoding,
    segments, attempts, stop_list, flash, client_id, created_at, updated_at)
SELECT :prefix || lpad(i::text, 7, '0'), '+49170' || lpad(i::text, 7, '0'), 'Sale',
    'campaign', :campaign, 'brand', :status, 'gsm7', 1, 0, true, false, '', now(), now()
FROM generate_series(1, :rows) AS i
"""


def seed_campaign_rows(
    conn: Connection, *, prefix: str, campaign: str, status: MessageStatus, rows: int
) -> None:
    """``rows`` campaign messages in ``status``, ids ``prefix`` + 7 digits from 1
    (PostgreSQL's generate_series: tens of thousands in a moment)."""
    params = {"prefix": prefix, "campaign": campaign, "status": status.value, "rows": rows}
    conn.execute(text(_SEED), params)
