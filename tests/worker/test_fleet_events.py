"""The fleet's events (worker.fleet_events) and each route in the fleet status.

What an operator relies on: one ``down`` and one ``up`` per outage whichever
worker saw it (a failed probe is no event), pauses and resumes with who did
them, the routes whose split changed named on each event, and each route's
accounts with their health and share of the last minute's traffic.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

import fakeredis
import pytest
import redis
from sqlalchemy.orm import Session

from providers.base import Accepted, Outcome, Rejected
from providers.errors import TransportError
from smsq.core.names import FLEET_EVENTS_KEY
from smsq.core.settings import Settings
from worker import fleet
from worker.fleet_events import EventKind, list_events, record
from worker.provider_health import BreakerSettings, BreakerState, ProviderHealth

BREAKER = BreakerSettings(failures=2, probe_interval=0.05)
ROUTES = """
[[routes]]
name = "bulk"
kinds = ["campaign"]
accounts = ["panel", "brand"]
weights = [70, 30]

[[routes]]
name = "otp"
kinds = ["otp"]
countries = ["DE", "AT"]
accounts = ["brand", "panel"]
"""


def refused() -> Outcome:
    return Rejected("m", TransportError("connection refused"))


@pytest.fixture
def settings(db_url: str, write_providers: Callable[..., Path]) -> Settings:
    path = write_providers(panel={"rate": 50, "burst": 20}, brand=True)
    path.write_text(path.read_text(encoding="utf-8") + ROUTES, encoding="utf-8")
    return Settings(database_url=db_url, providers_file=path)


def open_then_close(health: ProviderHealth) -> None:
    """Down (2 refusals), a failed probe, then an answered probe: up."""
    health.record([refused(), refused()])
    time.sleep(BREAKER.probe_interval + 0.02)
    assert health.gate().probe
    health.record([refused()], probe=True)  # still down: not an event
    time.sleep(BREAKER.probe_interval + 0.02)
    assert health.gate().probe
    assert health.record([Accepted("m", "p")], probe=True) is BreakerState.CLOSED


def test_an_outage_is_one_down_and_one_up_event_naming_the_routes_it_changed(
    redis_client: redis.Redis, settings: Settings
) -> None:
    open_then_close(ProviderHealth(redis_client, "panel", BREAKER))

    events = list_events(redis_client, settings.routes)

    assert [(e.account, e.event, e.by) for e in events] == [
        ("panel", "down", "breaker"),
        ("panel", "up", "breaker"),
    ]
    down, up = events
    assert down.reason == "2 consecutive transport failures"
    assert up.reason.startswith("a probe was answered after ")
    assert down.routes == up.routes == ["bulk", "otp"]
    assert down.at <= up.at <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)


def test_more_failures_while_down_add_no_event(redis_client: redis.Redis) -> None:
    health = ProviderHealth(redis_client, "panel", BREAKER)
    health.record([refused(), refused()])
    health.record([refused()] * 5)  # results in flight when it opened

    assert [e.event for e in list_events(redis_client, {})] == ["down"]


def test_the_breaker_logs_each_change_of_health(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    open_then_close(ProviderHealth(redis_client, "panel", BREAKER))

    assert "provider down: circuit breaker opened" in caplog.text
    assert "provider up: circuit breaker closed" in caplog.text
    assert caplog.text.count("provider down") == 1  # not the failed probe


def test_pause_and_resume_are_events_by_an_operator_and_repeats_are_not(
    settings: Settings,
) -> None:
    store = fakeredis.FakeRedis()
    fleet.pause(settings, store, "brand")
    fleet.pause(settings, store, "brand")  # already paused: nothing changed
    fleet.resume(settings, store, "brand")

    events = list_events(store, settings.routes)

    assert [(e.account, e.event, e.by) for e in events] == [
        ("brand", "paused", "operator"),
        ("brand", "resumed", "operator"),
    ]


def test_listing_filters_by_account_and_time_and_keeps_the_newest(
    redis_client: redis.Redis,
) -> None:
    for i in range(1_200):  # more than one page of the stream
        record(redis_client, "panel" if i % 2 else "brand", EventKind.PAUSED, reason=str(i))

    newest = list_events(redis_client, {}, limit=3)
    panel = list_events(redis_client, {}, account="panel", limit=700)
    assert [e.reason for e in newest] == ["1197", "1198", "1199"]
    assert len(panel) == 600 and {e.account for e in panel} == {"panel"}
    assert panel[0].reason == "1" and panel[-1].reason == "1199"
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    assert list_events(redis_client, {}, since=later) == []


def test_the_stream_is_capped(redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("worker.fleet_events.EVENTS_KEPT", 100)
    for i in range(1_000):
        record(redis_client, "panel", EventKind.PAUSED, reason=str(i))
    # MAXLEN ~ trims whole macro nodes: about the cap, never everything.
    assert 100 <= redis_client.xlen(FLEET_EVENTS_KEY) < 1_000


# --- routes in the fleet status ---------------------------------------------


def test_status_shows_each_route_with_its_accounts_health_and_last_minute_share(
    settings: Settings, session: Session, make_message: Callable[..., object]
) -> None:
    now = dt.datetime.now(dt.UTC)
    recent = now - dt.timedelta(seconds=20)
    for _ in range(7):
        make_message(status="sent", provider="panel", route="bulk", sent_at=recent)
    for _ in range(3):
        make_message(status="sent", provider="brand", route="bulk", sent_at=recent)
    make_message(status="sent", provider="brand", route="bulk", sent_at=now - dt.timedelta(hours=1))
    make_message(status="sent", provider="panel", sent_at=recent)  # no route
    store = fakeredis.FakeRedis()
    ProviderHealth(store, "brand", BREAKER).record([refused(), refused()])
    fleet.pause(settings, store, "panel")

    status = fleet.fleet_status(
        session, settings=settings, store=store, broker=store, workers=lambda: [], now=now
    )

    bulk, otp = status.routes
    assert (bulk.name, bulk.mode, bulk.kinds, bulk.sent_last_minute) == (
        "bulk",
        "weighted",
        ["campaign"],
        10,
    )
    assert [(a.name, a.weight, a.healthy, a.sent_last_minute) for a in bulk.accounts] == [
        ("panel", 70, False, 7),
        ("brand", 30, False, 3),
    ]
    assert [a.share_last_minute for a in bulk.accounts] == pytest.approx([0.7, 0.3])
    assert (otp.mode, otp.countries, otp.sent_last_minute) == ("failover", ["DE", "AT"], 0)
    assert [(a.name, a.weight, a.share_last_minute) for a in otp.accounts] == [
        ("brand", None, None),
        ("panel", None, None),
    ]
    assert [(e.account, e.event) for e in status.recent_events] == [
        ("brand", "down"),
        ("panel", "paused"),
    ]


def test_status_without_routes_has_none(
    db_url: str, write_providers: Callable[..., Path], session: Session
) -> None:
    settings = Settings(database_url=db_url, providers_file=write_providers(brand=True))
    store = fakeredis.FakeRedis()

    status = fleet.fleet_status(
        session,
        settings=settings,
        store=store,
        broker=store,
        workers=lambda: [],
        now=dt.datetime.now(dt.UTC),
    )

    assert status.routes == [] and status.recent_events == []
