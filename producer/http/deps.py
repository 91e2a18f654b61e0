"""What routes get from the application: its settings and a DB session.

The app owns one engine and sessionmaker, made on first use from
``settings.database_url`` (so an app built in a test or by ``uvicorn
--factory`` works without its lifespan having run) and disposed when the
app shuts down. Routes doing DB work are plain ``def`` so FastAPI runs them
in its threadpool; each request gets its own session.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from models.db import make_engine, make_sessionmaker
from smsq.settings import Settings


class Database:
    """One engine and sessionmaker per app, created lazily, thread-safely."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._sessionmaker: sessionmaker[Session] | None = None

    @property
    def engine(self) -> Engine:
        return self._make()[0]

    @property
    def session_factory(self) -> sessionmaker[Session]:
        return self._make()[1]

    def _make(self) -> tuple[Engine, sessionmaker[Session]]:
        with self._lock:
            if self._engine is None or self._sessionmaker is None:
                self._engine = make_engine(self.url)
                self._sessionmaker = make_sessionmaker(self._engine)
            return self._engine, self._sessionmaker

    def dispose(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
            self._engine = None
            self._sessionmaker = None


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def get_session(database: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    with database.session_factory() as session:
        yield session


AppSettings = Annotated[Settings, Depends(get_app_settings)]
DbSession = Annotated[Session, Depends(get_session)]
