"""``Idempotency-Key`` on every POST under ``/v1/``: one answer per key.

Route authors do nothing: this ASGI middleware handles it. Scope: the API
key (two clients may use the same Idempotency-Key). A record in
``idempotency_records`` is inserted *before* the request runs (the primary
key ``(client_id, key)`` makes exactly one request the winner, on SQLite and
PostgreSQL alike):

- the **winner** runs the request; its answer (status and body) is stored
  when it is 2xx or 4xx. On a 5xx or an exception the record is deleted, so
  a retry can run.
- a **repeat** with the same request (sha256 of method, path and body) gets
  the stored answer again, with ``Idempotent-Replayed: true``; while the
  first is still running it waits for it (up to ``WAIT_SECONDS``, then 409
  ``idempotency_in_progress`` with ``Retry-After``).
- the same key with another request is 422 ``idempotency_key_reused``.
- a key longer than 255 characters (or empty) is 422 naming
  ``Idempotency-Key``.

Records older than ``SMSQ_IDEMPOTENCY_TTL`` are ignored and replaced, and so
is a record still "running" after ``STALE_RUNNING_SECONDS`` (its process
died).

The body is hashed as it streams to the route, never held: a CSV upload of
a gigabyte costs no memory here. The winner's hash is stored with its answer,
so a repeat drains and hashes its own body and compares once the first
answer is there. Before the winner's answer starts, whatever part of its body
the route did not read is drained into the hash, so the hash always covers
the whole body.

The request is authenticated (and counted by the rate limiter) here, once;
the route's ``CurrentClient`` reuses that result. The key is also left in
the request's state (``request.state.idempotency_key``) for a route that
wants to pass it down.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

import anyio
import structlog
from fastapi import FastAPI
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.tables import IdempotencyRecord, utcnow
from producer.http.auth import client_for_request
from producer.http.deps import Database
from producer.http.errors import ApiError, error_response
from smsq.core.settings import Settings

log = structlog.get_logger("smsq.http")

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_MAX = 255  # idempotency_records.key
STATE_IDEMPOTENCY_KEY = "idempotency_key"
WAIT_SECONDS = 10.0  # a repeat waits this long for the first answer
POLL_SECONDS = 0.05
STALE_RUNNING_SECONDS = 3600  # a record still running after this is abandoned


@dataclass(frozen=True)
class StoredAnswer:
    request_hash: str
    status_code: int | None  # None: the first request is still running
    body: str | None
    created_at: dt.datetime


class IdempotencyStore:
    """The records, in the app's database (plain sync calls; run in a thread)."""

    def __init__(self, sessions: sessionmaker[Session], ttl_seconds: int) -> None:
        self.sessions = sessions
        self.ttl = dt.timedelta(seconds=ttl_seconds)

    def claim(self, client_id: str, key: str) -> StoredAnswer | None:
        """None when this request won the key, else the record found."""
        for _ in range(5):
            now = utcnow()
            with self.sessions() as session:
                session.add(
                    IdempotencyRecord(client_id=client_id, key=key, request_hash="", created_at=now)
                )
                try:
                    session.commit()
                    return None
                except IntegrityError:
                    session.rollback()
            found = self.load(client_id, key)
            if found is None:
                continue  # deleted in between (the first one failed): try again
            if not self._outdated(found, now):
                return found
            with self.sessions() as session:
                # Only the record we looked at: a concurrent replacer wins once.
                session.execute(
                    delete(IdempotencyRecord).where(
                        IdempotencyRecord.client_id == client_id,
                        IdempotencyRecord.key == key,
                        IdempotencyRecord.created_at == found.created_at,
                    )
                )
                session.commit()
        raise RuntimeError("could not claim the idempotency key")  # pragma: no cover

    def _outdated(self, found: StoredAnswer, now: dt.datetime) -> bool:
        age = now - found.created_at
        if found.status_code is None:
            return age > dt.timedelta(seconds=STALE_RUNNING_SECONDS)
        return age > self.ttl

    def load(self, client_id: str, key: str) -> StoredAnswer | None:
        with self.sessions() as session:
            row = session.get(IdempotencyRecord, (client_id, key))
            if row is None:
                return None
            return StoredAnswer(row.request_hash, row.status_code, row.body, row.created_at)

    def finish(
        self, client_id: str, key: str, request_hash: str, status_code: int, body: str
    ) -> None:
        with self.sessions() as session:
            session.execute(
                update(IdempotencyRecord)
                .where(IdempotencyRecord.client_id == client_id, IdempotencyRecord.key == key)
                .values(request_hash=request_hash, status_code=status_code, body=body)
            )
            session.commit()

    def release(self, client_id: str, key: str) -> None:
        with self.sessions() as session:
            session.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.client_id == client_id, IdempotencyRecord.key == key
                )
            )
            session.commit()


def applies_to(scope: Scope) -> bool:
    # The type first: a lifespan scope has no path (a KeyError there kept the
    # app's lifespan, and so its shutdown, from ever running).
    return (
        scope["type"] == "http"
        and scope["method"] == "POST"
        and str(scope["path"]).startswith("/v1/")
    )


def header_value(scope: Scope, name: bytes) -> str | None:
    for header, value in scope["headers"]:
        if header == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


class _BodyHasher:
    """Wraps ``receive``: hashes method, path and body as the route reads it."""

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self._receive = receive
        self._hash = hashlib.sha256()
        self._hash.update(f"{scope['method']} {scope['path']}\n".encode())
        self.done = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self._hash.update(message.get("body", b""))
            if not message.get("more_body", False):
                self.done = True
        elif message["type"] == "http.disconnect":
            self.done = True
        return message

    async def drain(self) -> None:
        while not self.done:
            await self.receive()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class IdempotencyMiddleware:
    """ASGI middleware; see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = header_value(scope, b"idempotency-key") if applies_to(scope) else None
        if key is None:
            await self.app(scope, receive, send)
            return
        try:
            await self._handle(scope, receive, send, key)
        except ApiError as exc:
            answer = error_response(
                exc.status, exc.code, exc.message, field=exc.field, headers=exc.headers
            )
            await answer(scope, receive, send)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, key: str) -> None:
        if not key or len(key) > KEY_MAX:
            raise ApiError(
                422,
                "invalid_field",
                f"must be 1 to {KEY_MAX} characters",
                field=HEADER,
            )
        fastapi_app: FastAPI = scope["app"]
        settings: Settings = fastapi_app.state.settings
        database: Database = fastapi_app.state.database
        state: dict[str, Any] = scope.setdefault("state", {})
        authorization = header_value(scope, b"authorization")
        client = await anyio.to_thread.run_sync(
            client_for_request, fastapi_app, state, authorization
        )
        state[STATE_IDEMPOTENCY_KEY] = key
        store = IdempotencyStore(database.session_factory, settings.idempotency_ttl)
        hasher = _BodyHasher(scope, receive)
        found = await anyio.to_thread.run_sync(store.claim, client.id, key)
        if found is None:
            await self._run_first(scope, hasher, send, store, client.id, key)
        else:
            await hasher.drain()
            await self._replay(scope, send, store, client.id, key, hasher.hexdigest(), found)

    async def _run_first(
        self,
        scope: Scope,
        hasher: _BodyHasher,
        send: Send,
        store: IdempotencyStore,
        client_id: str,
        key: str,
    ) -> None:
        status = 500
        chunks: list[bytes] = []

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                await hasher.drain()  # the hash covers the whole body
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, hasher.receive, recording_send)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(store.release, client_id, key)
            raise
        if status >= 500:
            await anyio.to_thread.run_sync(store.release, client_id, key)
            return
        body = b"".join(chunks).decode("utf-8", errors="replace")
        try:
            await anyio.to_thread.run_sync(
                store.finish, client_id, key, hasher.hexdigest(), status, body
            )
        except BaseException:
            # The answer is gone but not stored: free the key (a retry runs the
            # request again, where the message's own key still holds) rather
            # than leave it "running" and answer 409 to every retry for an hour.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(store.release, client_id, key)
            raise

    async def _replay(
        self,
        scope: Scope,
        send: Send,
        store: IdempotencyStore,
        client_id: str,
        key: str,
        request_hash: str,
        found: StoredAnswer,
    ) -> None:
        # Module constants read per call, so a test can shorten the wait.
        wait, poll = WAIT_SECONDS, POLL_SECONDS
        waited = 0.0
        current: StoredAnswer | None = found
        while current is not None and current.status_code is None:
            if waited >= wait:
                raise ApiError(
                    409,
                    "idempotency_in_progress",
                    "a request with this Idempotency-Key is still running; retry later",
                    field=HEADER,
                    headers={"Retry-After": "1"},
                )
            await anyio.sleep(poll)
            waited += poll
            current = await anyio.to_thread.run_sync(store.load, client_id, key)
        if current is None or current.status_code is None:
            raise ApiError(
                409,
                "idempotency_in_progress",
                "the first request with this Idempotency-Key failed; retry it",
                field=HEADER,
                headers={"Retry-After": "1"},
            )
        if current.request_hash != request_hash:
            raise ApiError(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used with another request; use a new key",
                field=HEADER,
            )
        log.info("idempotency.replayed", status=current.status_code)
        body = (current.body or "").encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": current.status_code,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (REPLAYED_HEADER.lower().encode(), b"true"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
