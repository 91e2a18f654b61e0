"""The client commands: send, message, keys, stoplist (campaigns: test_cli_campaigns.py).

Each test runs the real command against a migrated database (SQLite and
PostgreSQL) through the CLI's ``producer_factory`` seam, with an enqueuer that
records what would have gone to the broker.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.main import get_command
from typer.testing import CliRunner, Result

from models.db import make_engine, make_sessionmaker
from models.tables import ApiKey, Message, MessageEvent, Suppression
from producer.api import Producer
from producer.keys import KeyState, verify_key
from smsq.cli import app, common
from smsq.core.settings import DEFAULT_PROVIDERS, get_settings

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

    def __call__(self, *args: str, input: str | None = None) -> Result:
        return runner.invoke(app, list(args), input=input)

    def json(self, *args: str, code: int = 0, input: str | None = None) -> Any:
        result = self(*args, "--json", input=input)
        assert result.exit_code == code, result.output
        return json.loads(result.stdout)


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    for name in ("PROVIDERS_FILE", "DEFAULT_PROVIDER", "REDIS_URL", "BROKER_URL", "TIMEZONE"):
        monkeypatch.delenv(f"SMSQ_{name}", raising=False)
    monkeypatch.setenv("SMSQ_DATABASE_URL", db_url)
    get_settings.cache_clear()
    engine = make_engine(db_url)
    enqueuer = Recorder()

    def factory() -> Producer:
        # The command closes its producer (disposing the engine): a fresh one each time.
        return Producer(get_settings(), make_sessionmaker(make_engine(db_url)), enqueuer)

    monkeypatch.setattr(common, "producer_factory", factory)
    yield Cli(make_sessionmaker(engine), enqueuer)
    engine.dispose()
    get_settings.cache_clear()


def rows(cli: Cli, model: type[Any]) -> list[Any]:
    with cli.sessions() as session:
        return list(session.scalars(select(model)))


# --- send ----------------------------------------------------------------------


def test_send_an_otp(cli: Cli) -> None:
    out = cli.json(
        "send", "--to", "+49 170 1234567", "--text", "Your code is 123456", "--kind", "otp"
    )
    assert out["status"] == "queued" and out["encoding"] == "gsm7" and out["segments"] == 1
    (message,) = rows(cli, Message)
    assert (message.id, message.to, message.kind) == (out["id"], "+491701234567", "otp")
    assert cli.enqueuer.sent == [([out["id"]], "otp")]


def test_send_prints_a_table_without_json(cli: Cli) -> None:
    result = cli("send", "--to", "+491701234567", "--text", "Hello")
    assert result.exit_code == 0, result.output
    (message,) = rows(cli, Message)
    assert message.id in result.stdout and "queued" in result.stdout


def test_send_reads_the_text_from_stdin(cli: Cli) -> None:
    out = cli.json("send", "--to", "+491701234567", "--text", "-", input="Code 987654\n")
    (message,) = rows(cli, Message)
    assert message.text == "Code 987654" and out["id"] == message.id


def test_a_refused_value_is_bad_usage_naming_the_field(cli: Cli) -> None:
    result = cli("send", "--to", "12", "--text", "Your code is 123456", "--json")
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert (error["code"], error["field"]) == ("invalid_field", "to")
    assert "error: to: missing country code" in result.stderr
    assert "123456" not in result.output  # the text is never echoed
    assert rows(cli, Message) == []


def test_a_time_in_the_past_is_bad_usage(cli: Cli) -> None:
    result = cli("send", "--to", "+491701234567", "--text", "Hi", "--at", "2020-01-01 10:00")
    assert result.exit_code == 2
    assert "error: send_at:" in result.stderr


def test_send_later_in_the_vendor_form(cli: Cli) -> None:
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%d %H:%M")
    out = cli.json("send", "--to", "+491701234567", "--text", "Hi", "--at", later)
    assert out["status"] == "scheduled" and cli.enqueuer.sent == []


def test_an_unknown_kind_is_refused_by_the_parser(cli: Cli) -> None:
    result = cli("send", "--to", "+491701234567", "--text", "Hi", "--kind", "spam")
    assert result.exit_code == 2


def test_send_to_a_stop_listed_number(cli: Cli) -> None:
    assert cli("stoplist", "add", "+491701234567").exit_code == 0
    result = cli("send", "--to", "+491701234567", "--text", "Hi")
    assert result.exit_code == 0 and "stop list" in result.stderr
    assert cli.json("send", "--to", "+491701234567", "--text", "Hi")["status"] == "suppressed"
    otp = cli.json("send", "--to", "+491701234567", "--text", "Hi", "--skip-stop-list")
    assert otp["status"] == "queued"


def test_the_same_idempotency_key_sends_once(cli: Cli) -> None:
    args = ("send", "--to", "+491701234567", "--text", "Hi", "--idempotency-key", "order-42")
    assert cli.json(*args)["id"] == cli.json(*args)["id"]
    assert len(rows(cli, Message)) == 1


# --- message show ----------------------------------------------------------------


def test_message_show_has_the_history_but_never_the_text(cli: Cli) -> None:
    sent = cli.json("send", "--to", "+491701234567", "--text", "Your code is 55 11 22")
    out = cli.json("message", "show", sent["id"])
    assert out["status"] == "queued" and out["to"] == "+491701234567"
    assert [e["status"] for e in out["events"]] == ["queued"]
    result = cli("message", "show", sent["id"])
    assert result.exit_code == 0 and "history" in result.stdout
    for output in (json.dumps(out), result.output):
        assert "55 11 22" not in output


def test_message_show_has_the_provider_and_the_route(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    plain = cli.json("send", "--to", "+491701234567", "--text", "Hi")
    routes = '\n[[routes]]\nname = "otp"\nkinds = ["otp"]\naccounts = ["brand", "panel"]\n'
    path = tmp_path / "providers.toml"
    accounts = "".join(
        f"[providers.{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
        for name, table in DEFAULT_PROVIDERS.items()
    )
    path.write_text(accounts + routes)
    monkeypatch.setenv("SMSQ_PROVIDERS_FILE", str(path))
    get_settings.cache_clear()
    otp = cli.json("send", "--to", "+491701234567", "--text", "Code", "--kind", "otp")
    named = cli.json("send", "--to", "+491701234567", "--text", "Hi", "--provider", "otp")

    shown = [cli.json("message", "show", sent["id"]) for sent in (plain, otp, named)]

    assert [(out["provider"], out["route"]) for out in shown] == [
        ("panel", None),
        ("brand", "otp"),
        ("brand", "otp"),
    ]
    assert re.search(r"route\s*│\s*otp", cli("message", "show", otp["id"]).stdout)
    assert re.search(r"route\s*│\s*-", cli("message", "show", plain["id"]).stdout)


def test_an_unknown_message_is_a_failure(cli: Cli) -> None:
    out = cli.json("message", "show", "nope", code=1)
    assert out["error"]["code"] == "not_found"


# --- keys ------------------------------------------------------------------------


def test_keys_create_list_revoke(cli: Cli) -> None:
    made = cli.json("keys", "create", "shop", "--rate-limit", "20")
    key = made["key"]
    assert key.startswith(f"smsq_{made['prefix']}_") and made["webhook_secret"].startswith("whsec_")
    with cli.sessions() as session:
        assert verify_key(session, key).state is KeyState.OK

    listed = cli.json("keys", "list")
    assert [(k["name"], k["prefix"], k["rate_limit"]) for k in listed] == [
        ("shop", made["prefix"], 20)
    ]
    listing = json.dumps(listed) + cli("keys", "list").output
    (row,) = rows(cli, ApiKey)
    for secret in (key, row.key_hash, row.webhook_secret):
        assert secret not in listing

    revoked = cli.json("keys", "revoke", made["prefix"])
    assert revoked["revoked_at"] is not None
    assert cli("keys", "revoke", made["id"]).exit_code == 0  # again: still fine
    with cli.sessions() as session:
        assert verify_key(session, key).state is KeyState.REVOKED


def test_keys_create_shows_the_key_once_with_a_warning(cli: Cli) -> None:
    result = cli("keys", "create", "shop")
    assert result.exit_code == 0, result.output
    assert "cannot be shown again" in result.stderr
    key_line = next(line for line in result.stdout.splitlines() if line.startswith("key: "))
    with cli.sessions() as session:
        assert verify_key(session, key_line.removeprefix("key: ")).ok


def test_keys_revoke_unknown_and_bad_input(cli: Cli) -> None:
    assert cli.json("keys", "revoke", "zzzzzzzz", code=1)["error"]["code"] == "not_found"
    assert cli("keys", "create", "shop", "--rate-limit", "0").exit_code == 2
    bad = cli.json("keys", "create", "shop", "--webhook-url", "ftp://x/y", code=2)
    assert bad["error"]["field"] == "webhook_url"
    assert rows(cli, ApiKey) == []


# --- stop list -------------------------------------------------------------------


def test_stoplist_add_list_remove(cli: Cli) -> None:
    added = cli.json("stoplist", "add", "+49 170 1234567", "+4915112345678", "--reason", "STOP")
    assert (added["added"], added["already"], added["rejected"]) == (2, 0, 0)
    assert cli.json("stoplist", "add", "0049 170 1234567")["already"] == 1
    page = cli.json("stoplist", "list", "--limit", "1")
    assert [(e["number"], e["reason"]) for e in page] == [("+4915112345678", "STOP")]
    rest = cli.json("stoplist", "list", "--after", page[0]["number"])
    assert [e["number"] for e in rest] == ["+491701234567"]
    assert cli.json("stoplist", "remove", "+49 170 1234567") == {"removed": True}
    assert cli.json("stoplist", "remove", "+49 170 1234567") == {"removed": False}
    assert [s.number for s in rows(cli, Suppression)] == ["+4915112345678"]


def test_stoplist_add_reports_what_is_not_a_number_and_exits_2(cli: Cli) -> None:
    result = cli("stoplist", "add", "+491701234567", "hello")
    assert result.exit_code == 2
    assert "not a phone number" in result.stdout
    assert [s.number for s in rows(cli, Suppression)] == ["+491701234567"]


def test_stoplist_import(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "optout.csv"
    path.write_text("mobile,name\n+491701234567,Ann\nbad,Bob\n+4915112345678,Cy\n")
    out = cli.json("stoplist", "import", str(path), "--column", "mobile", "--reason", "opt-out")
    assert (out["added"], out["rejected"]) == (2, 1)
    assert out["errors"][0]["row"] == 2
    assert {s.reason for s in rows(cli, Suppression)} == {"opt-out"}

    missing = cli.json("stoplist", "import", str(path), code=2)  # no "phone" column
    assert missing["error"]["field"] == "file" and "mobile" in missing["error"]["message"]
    nothing = tmp_path / "nothing.csv"
    nothing.write_text("phone\nx\n")
    assert cli("stoplist", "import", str(nothing)).exit_code == 1
    assert cli("stoplist", "import", str(tmp_path / "absent.csv")).exit_code == 2


# --- services and the rules every command follows ---------------------------------


def test_an_unreachable_database_is_a_failure_without_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SMSQ_DATABASE_URL", "postgresql://smsq:hunter2@127.0.0.1:1/smsq")
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["keys", "list", "--json"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["code"] == "database_error"
    assert "Traceback" not in result.output and "hunter2" not in result.output


def test_a_database_without_the_schema_says_how_to_fix_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMSQ_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["stoplist", "list"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "smsq db upgrade" in result.stderr


def _leaves(command: Any, path: list[str]) -> Iterator[list[str]]:
    subcommands = getattr(command, "commands", None)  # a group (typer vendors click)
    if subcommands:
        for name, sub in subcommands.items():
            yield from _leaves(sub, [*path, name])
    else:
        yield path


CLIENT_COMMANDS = ("send", "message", "campaign", "stoplist", "keys")


def test_every_command_has_help_with_an_example_and_clients_have_json() -> None:
    leaves = list(_leaves(get_command(app), []))
    assert ["campaign", "submit"] in leaves and ["keys", "revoke"] in leaves
    for path in leaves:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, path
        assert "Example" in result.output, path
        if path[0] in CLIENT_COMMANDS:
            assert "--json" in result.output, path


def test_events_are_written_with_the_message(cli: Cli) -> None:
    cli.json("send", "--to", "+491701234567", "--text", "Hi")
    assert [e.status for e in rows(cli, MessageEvent)] == ["queued"]
