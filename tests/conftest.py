"""Shared fixtures: databases (SQLite always, PostgreSQL when reachable),
row factories, and the rule for integration tests.

Integration tests need real services. Without them they skip with the reason;
with ``SMSQ_REQUIRE_SERVICES=1`` (CI) they fail instead, so a broken service
cannot turn the suite silently green.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from models.db import make_engine, make_sessionmaker
from models.migrate import upgrade
from models.sms_text import analyze
from models.status import MessageKind
from models.tables import Base, Campaign, Message
from smsq import logs

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
