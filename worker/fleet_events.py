"""The fleet's events: provider accounts going down and coming back, operators'
pauses and resumes (``smsq fleet events``, ``GET /v1/fleet/events``).

One capped Redis stream (:data:`smsq.core.names.FLEET_EVENTS_KEY`) shared by
the fleet. The circuit breaker appends its changes in the same atomic call
that makes them (``worker/provider_health.lua``), so each outage is one
``down`` and one ``up`` whichever worker saw it; :func:`record` appends an
operator's. The entry's id is Redis's clock, the event's time.

A change of an account's health is also a change of the weights of every
route it is on: while it is down its share goes to the route's other
accounts, and it gets its configured share back when it is up
(``worker.routing``). :func:`list_events` names those routes on each event.

Limits: the stream keeps about :data:`EVENTS_KEPT` entries, and it lives in
Redis: a Redis restarted without persistence forgets them (the logs keep
every change too: ``provider down`` / ``provider up`` / ``provider paused``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

import redis

from providers.routes import Route
from smsq.core.names import FLEET_EVENTS_KEY

EVENTS_KEPT: Final = 10_000  # about this many entries are kept (XADD MAXLEN ~)
_PAGE = 500  # entries read per call while filtering


class EventKind(StrEnum):
    DOWN = "down"  # the circuit breaker opened: the account takes no messages
    UP = "up"  # a probe was answered: the account takes messages again
    PAUSED = "paused"  # an operator paused the account
    RESUMED = "resumed"  # an operator resumed it


@dataclass(frozen=True)
class FleetEvent:
    id: str
    """The stream entry's id (its order; ``<ms>-<n>``)."""
    at: dt.datetime
    account: str
    event: str
    reason: str
    by: str
    """``breaker`` (automatic) or ``operator``."""
    routes: list[str] = field(default_factory=list)
    """The routes whose accounts include it: their split changed with it."""


def record(
    store: redis.Redis, account: str, event: EventKind, *, reason: str, by: str = "operator"
) -> None:
    """Append one event (an operator's action; the breaker appends its own)."""
    store.xadd(
        FLEET_EVENTS_KEY,
        {"account": account, "event": event.value, "reason": reason, "by": by},
        maxlen=EVENTS_KEPT,
        approximate=True,
    )


def list_events(
    store: redis.Redis,
    routes: Mapping[str, Route],
    *,
    since: dt.datetime | None = None,
    account: str | None = None,
    limit: int = 50,
) -> list[FleetEvent]:
    """The newest ``limit`` events (oldest first), after ``since`` (a time
    without a zone is UTC), of ``account``."""
    found: list[FleetEvent] = []
    for event in _newest_first(store, since):
        if account is not None and event.account != account:
            continue
        found.append(event)
        if len(found) >= limit:
            break
    found.reverse()
    on_routes = _routes_by_account(routes)
    return [
        FleetEvent(
            id=e.id,
            at=e.at,
            account=e.account,
            event=e.event,
            reason=e.reason,
            by=e.by,
            routes=on_routes.get(e.account, []),
        )
        for e in found
    ]


def _newest_first(store: redis.Redis, since: dt.datetime | None) -> Iterator[FleetEvent]:
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    # Exclusive: an entry of the very millisecond ``since`` names is not after it.
    low = "-"
    if since is not None and since.timestamp() >= 0:  # a stream id has no time before 1970
        low = f"({int(since.timestamp() * 1000)}-18446744073709551615"
    high = "+"
    while True:
        page = store.xrevrange(FLEET_EVENTS_KEY, max=high, min=low, count=_PAGE) or []
        last = None
        for entry_id, fields in page:
            if entry_id is None or fields is None:  # not in a reply from Redis
                continue
            last = _text(entry_id)
            yield _event(last, fields)
        if len(page) < _PAGE or last is None:
            return
        high = "(" + last


def _event(entry_id: str, fields: Mapping[bytes | str, bytes | str]) -> FleetEvent:
    values = {_text(k): _text(v) for k, v in fields.items()}
    millis = int(entry_id.split("-", 1)[0])
    return FleetEvent(
        id=entry_id,
        at=dt.datetime.fromtimestamp(millis / 1000, dt.UTC),
        account=values.get("account", ""),
        event=values.get("event", ""),
        reason=values.get("reason", ""),
        by=values.get("by", ""),
    )


def _routes_by_account(routes: Mapping[str, Route]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for route in routes.values():
        for account in route.accounts:
            found.setdefault(account, []).append(route.name)
    return found


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
