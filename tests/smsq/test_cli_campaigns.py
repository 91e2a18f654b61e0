"""``smsq campaign``: submit, wait, status, pause/resume/cancel, report."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from models.db import make_engine, make_sessionmaker
from models.tables import Campaign, Message
from producer.api import Producer
from smsq.cli import app, campaigns, common
from smsq.core.settings import get_settings

runner = CliRunner()


@dataclass
class Recorder:
    sent: list[tuple[list[str], str]] = field(default_factory=list)
    started: list[str] = field(default_factory=list)

    def send_messages(self, ids: list[str], *, queue: str, eta: dt.datetime | None = None) -> bool:
        self.sent.append((list(ids), queue))
        return True

    def start_campaign(self, campaign_id: str, *, eta: dt.datetime | None = None) -> bool:
        self.started.append(campaign_id)
        return True


@dataclass
class Cli:
    sessions: sessionmaker[Session]
    enqueuer: Recorder
    csv: Path

    def __call__(self, *args: str) -> Result:
        return runner.invoke(app, list(args))

    def json(self, *args: str, code: int = 0) -> Any:
        result = self(*args, "--json")
        assert result.exit_code == code, result.output
        return json.loads(result.stdout)

    def submit(self, *args: str, code: int = 0) -> Any:
        return self.json(
            "campaign", "submit", str(self.csv), "--text", "Hi {name}", *args, code=code
        )


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    for name in ("PROVIDERS_FILE", "DEFAULT_PROVIDER", "REDIS_URL", "BROKER_URL", "TIMEZONE"):
        monkeypatch.delenv(f"SMSQ_{name}", raising=False)
    monkeypatch.setenv("SMSQ_DATABASE_URL", db_url)
    get_settings.cache_clear()
    engine = make_engine(db_url)
    enqueuer = Recorder()

    def factory() -> Producer:
        return Producer(get_settings(), make_sessionmaker(make_engine(db_url)), enqueuer)

    monkeypatch.setattr(common, "producer_factory", factory)
    path = tmp_path / "customers.csv"
    path.write_text(
        "name,phone\n"
        "Ann,+49 170 1234567\n"
        "Bob,not a number\n"
        "Cy,+4915112345678\n"
        "Ann again,0049 170 1234567\n"
    )
    yield Cli(make_sessionmaker(engine), enqueuer, path)
    engine.dispose()
    get_settings.cache_clear()


def campaigns_in_db(cli: Cli) -> list[Campaign]:
    with cli.sessions() as session:
        return list(session.scalars(select(Campaign)))


def finish(cli: Cli, campaign_id: str, status: str = "delivered") -> None:
    """What the workers would do: send everything, finish the campaign."""
    now = dt.datetime.now(dt.UTC)
    with cli.sessions() as session:
        session.execute(
            update(Message)
            .where(Message.campaign_id == campaign_id)
            .values(status=status, sent_at=now, finished_at=now)
        )
        session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)
            .values(status="finished", finished_at=now)
        )
        session.commit()


# --- submit ------------------------------------------------------------------------


def test_submit_reports_accepted_and_rejected_rows(cli: Cli) -> None:
    out = cli.submit()
    assert (out["accepted"], out["rejected"], out["status"]) == (2, 2, "running")
    assert [(e["row"], e["reason"]) for e in out["errors"]] == [
        (2, "not a phone number"),
        (4, "duplicate of row 1"),
    ]
    (campaign,) = campaigns_in_db(cli)
    assert (campaign.id, campaign.name) == (out["campaign_id"], "customers")
    with cli.sessions() as session:
        texts = set(session.scalars(select(Message.text)))
    assert texts == {"Hi Ann", "Hi Cy"}
    assert {queue for _, queue in cli.enqueuer.sent} == {"campaign"}


def test_submit_prints_the_receipt_and_first_errors(cli: Cli) -> None:
    result = cli("campaign", "submit", str(cli.csv), "--text", "Hi {name}", "--name", "spring")
    assert result.exit_code == 0, result.output
    assert "submitted" in result.stdout and "duplicate of row 1" in result.stdout
    assert [c.name for c in campaigns_in_db(cli)] == ["spring"]


def test_a_file_without_the_phone_column_creates_nothing(cli: Cli) -> None:
    out = cli.submit("--phone-column", "mobile", code=2)
    assert out["error"]["field"] == "file"
    assert "'phone'" in out["error"]["message"]  # the columns found are listed
    assert campaigns_in_db(cli) == []


def test_a_bad_template_is_bad_usage(cli: Cli) -> None:
    result = cli("campaign", "submit", str(cli.csv), "--text", "Hi {name")
    assert result.exit_code == 2 and "error: text:" in result.stderr
    assert campaigns_in_db(cli) == []


def test_nothing_accepted_exits_1(cli: Cli, tmp_path: Path) -> None:
    cli.csv.write_text("name,phone\nBob,nope\n")
    out = cli.submit(code=1)
    assert (out["accepted"], out["rejected"]) == (0, 1)


def test_submit_and_wait_until_finished(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    def workers_run(_: float) -> None:
        (campaign,) = campaigns_in_db(cli)
        finish(cli, campaign.id)

    monkeypatch.setattr(campaigns, "sleep", workers_run)
    out = cli.submit("--wait")
    assert out["receipt"]["accepted"] == 2
    final = out["campaign"]
    assert final["status"] == "finished" and final["counts"] == {"delivered": 2}


def test_the_live_view_ends_with_the_final_counts(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(campaigns, "sleep", lambda _: finish(cli, campaigns_in_db(cli)[0].id))
    result = cli("campaign", "submit", str(cli.csv), "--text", "Hi {name}", "--wait")
    assert result.exit_code == 0, result.output
    assert "finished" in result.stdout and "delivered" in result.stdout


def test_ctrl_c_stops_waiting_not_the_campaign(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(_: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(campaigns, "sleep", interrupt)
    result = cli("campaign", "submit", str(cli.csv), "--text", "Hi {name}", "--wait")
    assert result.exit_code == 130
    assert "the campaign goes on" in result.stderr
    assert [c.status for c in campaigns_in_db(cli)] == ["running"]


# --- status and control --------------------------------------------------------------


def test_status(cli: Cli) -> None:
    campaign_id = cli.submit()["campaign_id"]
    out = cli.json("campaign", "status", campaign_id)
    assert (out["status"], out["to_send"], out["counts"]) == ("running", 2, {"queued": 2})
    assert out["rejected"] == 2
    result = cli("campaign", "status", campaign_id)
    assert result.exit_code == 0 and "messages by status" in result.stdout


def test_list_shows_the_newest_first_and_filters_by_status(cli: Cli) -> None:
    first = cli.submit("--name", "first")["campaign_id"]
    second = cli.submit("--name", "second")["campaign_id"]
    cli.json("campaign", "pause", first)
    listed = cli.json("campaign", "list")
    assert [c["id"] for c in listed] == [second, first]
    assert [c["name"] for c in cli.json("campaign", "list", "--status", "paused")] == ["first"]
    table = cli("campaign", "list")
    assert table.exit_code == 0 and second in table.stdout
    assert cli("campaign", "list", "--status", "nonsense").exit_code == 2


def test_unknown_campaign_is_a_failure_everywhere(cli: Cli) -> None:
    for command in ("status", "pause", "resume", "cancel", "report"):
        out = cli.json("campaign", command, "no-such-id", code=1)
        assert out["error"]["code"] == "not_found", command


def test_pause_resume_cancel(cli: Cli) -> None:
    campaign_id = cli.submit()["campaign_id"]
    assert cli.json("campaign", "pause", campaign_id)["status"] == "paused"
    again = cli("campaign", "pause", campaign_id)
    assert again.exit_code == 0 and "already paused" in again.stdout
    resumed = cli.json("campaign", "resume", campaign_id)
    assert (resumed["status"], resumed["changed"]) == ("running", True)
    assert cli.enqueuer.started == [campaign_id]
    cancelled = cli.json("campaign", "cancel", campaign_id)
    assert (cancelled["status"], cancelled["cancelled_messages"]) == ("cancelled", 2)
    refused = cli.json("campaign", "pause", campaign_id, code=1)
    assert refused["error"] == {
        "code": "not_allowed",
        "message": "cannot pause a campaign that is cancelled",
        "field": None,
    }
    with cli.sessions() as session:
        assert set(session.scalars(select(Message.status))) == {"cancelled"}


def test_a_finished_campaign_cannot_be_cancelled(cli: Cli) -> None:
    campaign_id = cli.submit()["campaign_id"]
    finish(cli, campaign_id)
    result = cli("campaign", "cancel", campaign_id)
    assert result.exit_code == 1 and "is finished" in result.stderr


# --- report ------------------------------------------------------------------------


def test_report_as_csv_json_and_file(cli: Cli, tmp_path: Path) -> None:
    campaign_id = cli.submit()["campaign_id"]
    finish(cli, campaign_id, status="undelivered")

    result = cli("campaign", "report", campaign_id)
    assert result.exit_code == 0, result.output
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    assert sorted(r["to"] for r in table) == ["+4915112345678", "+491701234567"]
    assert {r["status"] for r in table} == {"undelivered"} and table[0]["sent_at"]

    rows = cli.json("campaign", "report", campaign_id)
    assert [r["message_id"] for r in rows] == [r["message_id"] for r in table]

    target = tmp_path / "report.csv"
    written = cli.json("campaign", "report", campaign_id, "-o", str(target))
    assert written["rows"] == 2
    assert target.read_text() == result.stdout  # both with newlines normalized


def test_report_of_an_empty_campaign_is_a_header_or_an_empty_array(cli: Cli) -> None:
    cli.csv.write_text("name,phone\nBob,nope\n")
    campaign_id = cli.submit(code=1)["campaign_id"]
    assert cli("campaign", "report", campaign_id).stdout.startswith("to,message_id,status")
    assert cli.json("campaign", "report", campaign_id) == []
