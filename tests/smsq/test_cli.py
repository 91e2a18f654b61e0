from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect
from typer.testing import CliRunner

from models.db import make_engine
from smsq.cli import app
from smsq.core.settings import get_settings

runner = CliRunner()


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("DATABASE_URL", "PROVIDERS_FILE", "DEFAULT_PROVIDER", "REDIS_URL", "BROKER_URL"):
        monkeypatch.delenv(f"SMSQ_{name}", raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_config_json_masks_credentials(fresh_settings: pytest.MonkeyPatch) -> None:
    fresh_settings.setenv("SMSQ_DATABASE_URL", "postgresql://smsq:hunter2@db/smsq")
    result = runner.invoke(app, ["config", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["settings"]["database_url"] == "postgresql://smsq:***@db/smsq"
    assert data["providers"]["panel"]["api_key"] == "**********"
    assert "hunter2" not in result.output and "demo-panel-key" not in result.output


def test_a_malformed_providers_file_exits_1_naming_the_field(
    tmp_path: Path, fresh_settings: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[providers.x]\nadapter = "brand"\nurl = "http://h/b"\nkey = "k"\n')
    fresh_settings.setenv("SMSQ_PROVIDERS_FILE", str(path))
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 1
    assert "[providers.x]: field 'brand_id': Field required" in result.output


def test_db_upgrade_creates_the_schema(tmp_path: Path, fresh_settings: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    fresh_settings.setenv("SMSQ_DATABASE_URL", url)
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    engine = make_engine(url)
    assert {"messages", "campaigns", "message_events", "suppressions"} <= set(
        inspect(engine).get_table_names()
    )
    engine.dispose()


def test_bad_usage_exits_2() -> None:
    assert runner.invoke(app, ["db", "upgrade", "a", "b"]).exit_code == 2
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2


def test_every_command_has_help_with_an_example() -> None:
    commands = (["simulator"], ["config"], ["db", "upgrade"], ["db", "downgrade"], ["demo"])
    for command in (*commands, ["db", "prune"]):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0
        assert "Example" in result.output, command


def test_db_prune_counts_then_deletes_old_finished_messages(
    tmp_path: Path, fresh_settings: pytest.MonkeyPatch
) -> None:
    import datetime as dt

    from models.db import make_sessionmaker
    from models.tables import Message

    url = f"sqlite:///{tmp_path / 'prune.db'}"
    fresh_settings.setenv("SMSQ_DATABASE_URL", url)
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    engine = make_engine(url)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=100)
    with make_sessionmaker(engine)() as session:
        for status, finished in (("delivered", old), ("queued", None)):
            session.add(
                Message(
                    to="+4915550000001",
                    text="t",
                    provider="panel",
                    status=status,
                    encoding="gsm7",
                    segments=1,
                    finished_at=finished,
                )
            )
        session.commit()

    counted = runner.invoke(app, ["db", "prune", "--older-than", "90d", "--dry-run", "--json"])
    assert counted.exit_code == 0, counted.output
    assert json.loads(counted.stdout)["messages"] == 1
    assert runner.invoke(app, ["db", "prune", "--older-than", "90d"], input="n\n").exit_code == 1
    done = runner.invoke(app, ["db", "prune", "--older-than", "90d", "--yes", "--json"])
    assert json.loads(done.stdout)["messages"] == 1
    with make_sessionmaker(engine)() as session:
        assert [m.status for m in session.query(Message)] == ["queued"]
    engine.dispose()

    bad = runner.invoke(app, ["db", "prune", "--older-than", "soon", "--json"])
    assert bad.exit_code == 2
    assert json.loads(bad.stdout)["error"]["field"] == "older_than"
