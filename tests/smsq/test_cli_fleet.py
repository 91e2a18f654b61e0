"""``smsq fleet``: what the operator sees (output, JSON, exit codes) and what
changes in the database and Redis."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from models.status import MessageStatus
from models.tables import Message
from providers.base import Rejected
from providers.errors import TransportError
from smsq.cli import app
from smsq.cli import fleet as fleet_cli
from smsq.core.names import TASK_SEND, owner_key, paused_key
from smsq.core.settings import Settings
from worker import fleet
from worker.owners import Owner
from worker.provider_health import ProviderHealth, breaker_settings

S = MessageStatus
runner = CliRunner()


@dataclass
class Cli:
    settings: Settings
    store: fakeredis.FakeRedis
    broker: fakeredis.FakeRedis
    published: list[tuple[str, list[Any], dict[str, Any], str]] = field(default_factory=list)
    purged: list[str] = field(default_factory=list)

    def __call__(self, *args: str, input: str | None = None) -> Result:
        return runner.invoke(app, ["fleet", *args], input=input)

    def json(self, *args: str, code: int = 0) -> Any:
        result = self(*args, "--json")
        assert result.exit_code == code, result.output
        return json.loads(result.stdout)


@pytest.fixture
def cli(
    db_url: str,
    write_providers: Callable[..., Path],
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    recording_publisher: Any,
) -> Iterator[Cli]:
    settings = Settings(database_url=db_url, providers_file=write_providers())
    c = Cli(settings=settings, store=fakeredis.FakeRedis(), broker=fakeredis.FakeRedis())
    c.published = recording_publisher.tasks

    def purge(queue: str) -> int:
        c.purged.append(queue)
        return 7

    def factory() -> fleet_cli.FleetContext:
        return fleet_cli.FleetContext(
            settings=c.settings,
            sessions=sessions,
            store=c.store,
            broker=c.broker,
            workers=lambda: [fleet.WorkerInfo("celery@bulk-1", ["campaign"])],
            publisher=recording_publisher,
            purge=purge,
        )

    monkeypatch.setattr(fleet_cli, "context_factory", factory)
    yield c


def test_status_as_a_table_and_as_json(cli: Cli, make_message: Callable[..., Message]) -> None:
    make_message(status=S.UNKNOWN)
    make_message(status=S.FAILED, error_code=9, finished_at=dt.datetime.now(dt.UTC))

    table = cli("status")
    assert table.exit_code == 0, table.output
    assert "celery@bulk-1" in table.output and "panel" in table.output
    assert "9: 1" in table.output

    doc = cli.json("status")
    assert doc["workers"] == [{"name": "celery@bulk-1", "queues": ["campaign"]}]
    assert doc["unknown"] == 1
    assert [q["name"] for q in doc["queues"]] == ["otp", "transactional", "campaign", "webhooks"]
    assert doc["providers"][0]["name"] == "panel"
    assert doc["providers"][0]["paused"] is False
    assert doc["providers"][0]["errors_last_hour"] == {"9": 1}
    assert doc["providers"][0]["breaker"] == "closed"


def test_status_shows_an_open_circuit_breaker_and_since_when(cli: Cli) -> None:
    settings = Settings()
    health = ProviderHealth(cli.store, "panel", breaker_settings(settings))
    health.record([Rejected("m", TransportError("refused"))] * settings.breaker_failures)

    table = cli("status")
    assert table.exit_code == 0, table.output
    expected = f"circuit breaker open ({settings.breaker_failures} consecutive transport failures)"
    assert expected in table.output

    panel = cli.json("status")["providers"][0]
    assert panel["breaker"] == "open"
    assert dt.datetime.fromisoformat(panel["breaker_since"]) <= dt.datetime.now(dt.UTC)
    assert "transport" in panel["breaker_reason"]


ROUTES = """
[[routes]]
name = "bulk"
kinds = ["campaign"]
accounts = ["panel", "brand"]
weights = [70, 30]
"""


@pytest.fixture
def routed(cli: Cli, db_url: str, write_providers: Callable[..., Path]) -> Cli:
    """The CLI on a providers file with a weighted route across both accounts."""
    path = write_providers(brand=True)
    path.write_text(path.read_text(encoding="utf-8") + ROUTES, encoding="utf-8")
    cli.settings = Settings(database_url=db_url, providers_file=path)
    return cli


def test_status_shows_each_route_its_accounts_health_and_share(
    routed: Cli, make_message: Callable[..., Message]
) -> None:
    recent = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=10)
    for provider in ("panel", "panel", "panel", "brand"):
        make_message(status=S.SENT, provider=provider, route="bulk", sent_at=recent)
    health = ProviderHealth(routed.store, "brand", breaker_settings(routed.settings))
    health.record([Rejected("m", TransportError("refused"))] * routed.settings.breaker_failures)

    table = routed("status")
    assert table.exit_code == 0, table.output
    assert "routes" in table.output and "bulk" in table.output
    assert "75%" in table.output and "25%" in table.output and "down" in table.output

    (bulk,) = routed.json("status")["routes"]
    assert bulk["name"] == "bulk" and bulk["mode"] == "weighted"
    assert [
        (a["name"], a["weight"], a["healthy"], a["sent_last_minute"]) for a in bulk["accounts"]
    ] == [
        ("panel", 70, True, 3),
        ("brand", 30, False, 1),
    ]
    assert routed.json("status")["recent_events"][0]["event"] == "down"


def test_events_lists_downs_ups_and_pauses_oldest_first(routed: Cli) -> None:
    assert routed("events").stdout.strip() == "no fleet events"
    health = ProviderHealth(routed.store, "brand", breaker_settings(routed.settings))
    health.record([Rejected("m", TransportError("refused"))] * routed.settings.breaker_failures)
    assert routed("pause", "panel").exit_code == 0

    table = routed("events")
    assert table.exit_code == 0, table.output
    for word in ("brand", "down", "breaker", "panel", "paused", "operator"):
        assert word in table.output

    doc = routed.json("events")
    assert [(e["account"], e["event"], e["by"], e["routes"]) for e in doc["events"]] == [
        ("brand", "down", "breaker", ["bulk"]),
        ("panel", "paused", "operator", ["bulk"]),
    ]
    assert [e["event"] for e in routed.json("events", "--provider", "panel")["events"]] == [
        "paused"
    ]
    assert routed.json("events", "--limit", "1")["events"][0]["event"] == "paused"
    assert routed.json("events", "--since", "1m")["events"] != []


def test_events_refuses_a_bad_since(routed: Cli) -> None:
    result = routed("events", "--since", "yesterday")
    assert result.exit_code == 2
    assert "since" in result.output


def test_watch_and_json_do_not_mix(cli: Cli) -> None:
    assert cli("status", "--watch", "--json").exit_code == 2


def test_pause_and_resume_set_the_flag_workers_read(cli: Cli) -> None:
    assert cli.json("pause", "panel") == {"provider": "panel", "paused": True, "changed": True}
    assert cli.store.exists(paused_key("panel")) == 1
    again = cli("pause", "panel")
    assert again.exit_code == 0 and "already paused" in again.output
    assert cli.json("status")["providers"][0]["paused"] is True

    resumed = cli("resume", "panel")
    assert resumed.exit_code == 0 and "resumed" in resumed.output
    assert cli.store.exists(paused_key("panel")) == 0


def test_pause_of_an_unknown_provider_is_a_usage_error(cli: Cli) -> None:
    result = cli("pause", "nope")
    assert result.exit_code == 2
    assert "unknown provider 'nope'" in result.output
    assert cli.store.keys() == []


def test_retry_counts_first_asks_then_requeues_and_publishes(
    cli: Cli, session: Session, make_message: Callable[..., Message]
) -> None:
    now = dt.datetime.now(dt.UTC)
    failed = [make_message(status=S.FAILED, error_code=9, finished_at=now) for _ in range(2)]
    make_message(status=S.FAILED, error_code=5, finished_at=now)

    assert cli.json("retry", "--code", "9", "--dry-run") == {
        "dry_run": True,
        "matched": 2,
        "requeued": 0,
    }
    declined = cli("retry", "--code", "9", input="n\n")
    assert declined.exit_code == 1 and "2 messages match" in declined.output
    assert cli.published == []

    done = cli("retry", "--code", "9", "--since", "1h", "--validity", "600", input="y\n")
    assert done.exit_code == 0, done.output
    assert "re-queued 2 messages" in done.output
    session.expire_all()
    assert {session.get_one(Message, m.id).status for m in failed} == {S.QUEUED}
    assert [(t, sorted(a[0]), q) for t, a, _, q in cli.published] == [
        (TASK_SEND, sorted(m.id for m in failed), "transactional")
    ]


def test_retry_refuses_what_it_cannot_do(cli: Cli) -> None:
    assert cli("retry", "--status", "bogus", "--yes").exit_code == 2
    assert cli("retry", "--since", "yesterday", "--yes").exit_code == 2
    assert cli.json("retry", code=2)["error"]["message"].startswith("--json needs")


def test_reconcile_prints_what_the_sweep_did(
    cli: Cli, make_message: Callable[..., Message]
) -> None:
    make_message(status=S.QUEUED)
    # A claim of a worker process that died before sending it (worker.owners).
    dead = Owner(cli.store, ttl=10, marks_ttl=600)
    assert dead.beat()
    make_message(status=S.SENDING, lease_token=dead.token(), attempts=1)
    cli.store.delete(owner_key(dead.name))
    doc = cli.json("reconcile")
    # The lost broker marker re-enqueues every due queued row, the recovered one too.
    assert doc["broker_lost"] is True and doc["requeued"] == 2 and doc["tasks_published"] == 2
    assert (doc["dead_owner_requeued"], doc["dead_owner_unknown"]) == (1, 0)
    table = cli("reconcile")
    assert table.exit_code == 0 and "re-enqueued" in table.output
    assert "dead workers' unsent rows" in table.output


def test_purge_asks_and_only_purges_a_known_queue(cli: Cli) -> None:
    assert cli("purge", "nope", "--yes").exit_code == 2
    declined = cli("purge", "campaign", input="n\n")
    assert declined.exit_code == 1 and cli.purged == []
    done = cli("purge", "campaign", input="y\n")
    assert done.exit_code == 0 and "purged 7 tasks" in done.output
    assert cli.json("purge", "otp", "--yes") == {"queue": "otp", "purged": 7}
    assert cli.purged == ["campaign", "otp"]
