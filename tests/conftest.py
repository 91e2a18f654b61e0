"""Shared fixtures: databases (SQLite always, PostgreSQL when reachable),
row factories, and the rule for integration tests.

Integration tests need real services. Without them they skip with the reason;
with ``SMSQ_REQUIRE_SERVICES=1`` (CI) they fail instead, so a broken service
cannot turn the suite silently green.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from models.db import make_engine, make_sessionmaker
from models.migrate import upgrade
from models.sms_text import analyze
from models.status import MessageKind
from models.tables import Base, Campaign, Message
from smsq.core import logs
from smsq.core.names import (
    QUEUE_CAMPAIGN,
    QUEUE_WEBHOOKS,
    TASK_DELIVER_WEBHOOK,
    TASK_SEND,
    TASK_START_CAMPAIGN,
)

THIS_FILE = Path(__file__).resolve()
REDIS_URL = os.environ.get("SMSQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get("SMSQ_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_SERVICES = os.environ.get("SMSQ_REQUIRE_SERVICES") == "1"


# Every log line of the run is also kept here (this process's through a
# handler, child processes' when their stack stops) for the scan that checks
# no secret was ever logged: tests/zz_logs/test_logs_hold_no_secrets.py.
LOG_ARCHIVE = Path(os.environ.get("SMSQ_TEST_LOG_ARCHIVE", f"/tmp/smsq-test-logs-{os.getpid()}"))


@pytest.fixture(scope="session", autouse=True)
def _structured_logs_through_logging() -> Iterator[None]:
    """structlog through ``logging``, so pytest captures it (and caplog sees it)."""
    logs.configure(json=False, level="INFO")
    shutil.rmtree(LOG_ARCHIVE, ignore_errors=True)
    LOG_ARCHIVE.mkdir(parents=True)
    os.environ["SMSQ_TEST_LOG_ARCHIVE"] = str(LOG_ARCHIVE)  # for archive_log and children
    archive = logging.FileHandler(LOG_ARCHIVE / "pytest.log", encoding="utf-8")
    archive.setFormatter(logs.formatter(json=True))
    root = logging.getLogger()
    root.addHandler(archive)
    yield
    root.removeHandler(archive)
    archive.close()


# --- the ledger is the only writer of a message's status ----------------------
#
# Every SQL statement a test runs through SQLAlchemy is looked at; one that
# writes a message's status, ``sent_at`` or ``finished_at``, or a
# ``message_events`` row, must come from ``models/ledger/``. The innermost
# frame of our code that issued it decides: the ledger is fine, a test setting
# up rows is fine, anything else in our packages is a violation, kept and
# reported after the test (not raised: a production ``except Exception`` must
# not be able to hide it). tests/models/ledger/test_guard.py tests the guard.

ROOT = Path(__file__).resolve().parent.parent
LEDGER = ROOT / "models" / "ledger"
PACKAGES = tuple(ROOT / name for name in ("models", "providers", "producer", "worker", "smsq"))
TESTS = ROOT / "tests"

_INSERT = re.compile(r"^\s*INSERT INTO (message_events|messages)\b", re.IGNORECASE)
_UPDATE = re.compile(
    r"^\s*UPDATE messages SET (?P<set>.*?)(?: WHERE |$)", re.IGNORECASE | re.DOTALL
)
_STATUS_COLUMN = re.compile(r"\b(status|sent_at|finished_at)\s*=", re.IGNORECASE)

ledger_violations: list[str] = []


def writes_status(statement: str) -> bool:
    if _INSERT.match(statement):
        return True
    update = _UPDATE.match(statement)
    return update is not None and _STATUS_COLUMN.search(update.group("set")) is not None


def writer_of_statement() -> Path | None:
    """The file of the innermost frame of ours (package or test) on the stack."""
    frame = sys._getframe(1)
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        ours = path.is_relative_to(TESTS) or any(path.is_relative_to(p) for p in PACKAGES)
        if ours and path != THIS_FILE:
            return path
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _check(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    if not writes_status(statement):
        return
    writer = writer_of_statement()
    if writer is None or writer.is_relative_to(LEDGER) or writer.is_relative_to(TESTS):
        return
    first_line = " ".join(statement.split())[:120]
    ledger_violations.append(f"{writer.relative_to(ROOT)}: {first_line}")


def install_ledger_guard() -> None:
    if not event.contains(Engine, "before_cursor_execute", _check):
        event.listen(Engine, "before_cursor_execute", _check)


@pytest.fixture
def ledger_guard_violations() -> list[str]:
    """The writes the guard caught so far in this test (a test of the guard empties it)."""
    return ledger_violations


@pytest.fixture(autouse=True)
def _only_the_ledger_writes_statuses() -> Iterator[None]:
    """Fail a test whose code wrote a message status outside ``models/ledger/``."""
    install_ledger_guard()
    ledger_violations.clear()
    yield
    found = list(ledger_violations)
    ledger_violations.clear()
    assert not found, "status written outside models/ledger/:\n" + "\n".join(found)


# --- run order ------------------------------------------------------------------

# ``@pytest.mark.last`` tests run after every other selected test, whatever
# their path or the order they were given in: the scan of the run's logs
# (tests/zz_logs) must come after everything that logs. Nothing depends on
# the directory's name.
_FINISHED = pytest.StashKey[set[str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "last: run after every other selected test (tests/conftest.py moves it)"
    )
    config.stash[_FINISHED] = set()


@pytest.hookimpl(trylast=True)  # after any other plugin's reordering
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A stable sort: the others keep their order, and so do the last ones.
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    item.config.stash[_FINISHED].add(item.nodeid)


@pytest.fixture
def tests_still_to_run(request: pytest.FixtureRequest) -> list[str]:
    """Selected tests not marked ``last`` that have not run yet: for a ``last``
    test to show that it really is last."""
    finished = request.config.stash[_FINISHED]
    return [
        item.nodeid
        for item in request.session.items
        if item.get_closest_marker("last") is None and item.nodeid not in finished
    ]


def need_service(name: str, error: BaseException) -> None:
    """Skip (or, when services are required, fail) because ``name`` is unreachable."""
    reason = f"{name} not reachable: {type(error).__name__}: {error}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (SMSQ_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(reason)


# --- databases ---------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating is the slow part)."""
    path = tmp_path_factory.mktemp("db") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, migrated, dropped at the end."""
    try:
        admin = make_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        need_service("PostgreSQL", exc)
    name = f"smsq_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate(engine: Engine) -> None:
    names = ", ".join(f'"{t.name}"' for t in reversed(Base.metadata.sorted_tables))
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture
def postgres_url(postgres_database: str) -> Iterator[str]:
    """The run's PostgreSQL database, emptied after the test."""
    yield postgres_database
    engine = make_engine(postgres_database)
    _truncate(engine)
    engine.dispose()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)],
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    """A migrated, empty database: SQLite, and PostgreSQL when reachable."""
    if request.param == "sqlite":
        path = tmp_path / "smsq.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    yield request.getfixturevalue("postgres_url")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with make_sessionmaker(engine)() as s:
        yield s


# --- Redis -------------------------------------------------------------------


@pytest.fixture(scope="session")
def real_redis_url() -> str:
    """The URL of a real Redis for this run (database 15 by default, flushed per test)."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        need_service("Redis", exc)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture(params=["fakeredis", pytest.param("redis", marks=pytest.mark.integration)])
def redis_client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """A Redis client: fakeredis (with Lua) always, a real Redis when reachable."""
    if request.param == "fakeredis":
        client: redis.Redis = fakeredis.FakeRedis()
    else:
        client = redis.Redis.from_url(request.getfixturevalue("real_redis_url"))
        client.flushdb()
    yield client
    client.flushdb()
    client.close()


# --- factories ---------------------------------------------------------------


@pytest.fixture
def make_message(session: Session) -> Callable[..., Message]:
    """Insert a message row; keyword arguments override the defaults."""
    counter = iter(range(10**9))

    def factory(**fields: Any) -> Message:
        text_ = fields.pop("text", "Hello from smsq")
        sms = analyze(text_)
        values: dict[str, Any] = {
            "to": f"+4915550{next(counter):06d}",
            "text": text_,
            "kind": MessageKind.TRANSACTIONAL,
            "provider": "panel",
            "encoding": sms.encoding,
            "segments": sms.segments,
        }
        values.update(fields)
        message = Message(**values)
        session.add(message)
        session.commit()
        return message

    return factory


@pytest.fixture
def make_campaign(session: Session) -> Callable[..., Campaign]:
    def factory(**fields: Any) -> Campaign:
        values: dict[str, Any] = {"name": "spring sale", "text": "Hi {name}", "provider": "panel"}
        values.update(fields)
        campaign = Campaign(**values)
        session.add(campaign)
        session.commit()
        return campaign

    return factory


# --- publishing ------------------------------------------------------------------


@dataclass
class RecordingPublisher:
    """Stands in for the broker (smsq.core.publisher.Publisher): keeps what would have
    been published. ``tasks``: (task, args, kwargs, queue) of every task;
    ``calls``: (ids, queue, countdown) of the send tasks."""

    tasks: list[tuple[str, list[Any], dict[str, Any], str]] = field(default_factory=list)
    calls: list[tuple[list[str], str, float | None]] = field(default_factory=list)
    accept: bool = True

    def send_messages(
        self,
        ids: list[str],
        *,
        queue: str,
        eta: dt.datetime | None = None,
        countdown: float | None = None,
        resend_unknown: bool = False,
    ) -> bool:
        kwargs = {"resend_unknown": True} if resend_unknown else {}
        self.tasks.append((TASK_SEND, [list(ids)], kwargs, queue))
        self.calls.append((list(ids), queue, countdown))
        return self.accept

    def start_campaign(
        self, campaign_id: str, *, eta: dt.datetime | None = None, queue: str = QUEUE_CAMPAIGN
    ) -> bool:
        self.tasks.append((TASK_START_CAMPAIGN, [campaign_id], {}, queue))
        return self.accept

    def deliver_webhook(self, delivery_id: str, *, countdown: float | None = None) -> bool:
        self.tasks.append((TASK_DELIVER_WEBHOOK, [delivery_id], {}, QUEUE_WEBHOOKS))
        return self.accept

    @property
    def ids(self) -> list[str]:
        return [i for ids, _, _ in self.calls for i in ids]


@pytest.fixture
def recording_publisher() -> RecordingPublisher:
    return RecordingPublisher()


# --- provider accounts -----------------------------------------------------------

# Accounts at a provider no test ever reaches (sim.test): for tests that need
# settings with accounts but send nothing, or send through MockTransport.
TEST_ACCOUNTS: dict[str, dict[str, Any]] = {
    "panel": {
        "adapter": "panelsms",
        "url": "http://sim.test/sendMtSms.php",
        "user": "demo@example.com",
        "api_key": "demo-panel-key",
        "sender": "SMSQ",
    },
    "brand": {
        "adapter": "brand",
        "url": "http://sim.test/brand/send",
        "key": "demo-brand-key",
        "brand_id": "SMSQ",
    },
}


@pytest.fixture
def write_providers(tmp_path: Path) -> Callable[..., Path]:
    """``write_providers(panel={"rate": 50}, brand=True)`` -> a providers file.

    ``panel`` is always there (with its overrides); ``brand`` when given.
    """

    def write(panel: dict[str, Any] | None = None, brand: dict[str, Any] | bool = False) -> Path:
        accounts = {"panel": {**TEST_ACCOUNTS["panel"], **(panel or {})}}
        if brand:
            extra = brand if isinstance(brand, dict) else {}
            accounts["brand"] = {**TEST_ACCOUNTS["brand"], **extra}
        path = tmp_path / "providers.toml"
        path.write_text(
            "".join(
                f"[providers.{name}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in table.items())
                for name, table in accounts.items()
            ),
            encoding="utf-8",
        )
        return path

    return write


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int | float) else f'"{value}"'
