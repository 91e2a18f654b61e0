"""Choosing the account of a routed message when it is sent (docs/routing.md).

A message accepted on a route (``messages.route``) is stored with the route's
first account; the worker chooses again for every attempt. An account is
**down** while its circuit breaker holds every message (open, probe not due:
``ProviderHealth.holding``) or an operator paused it (``smsq fleet pause``);
the others are **healthy**. Without weights the first healthy account in
route order takes the message; with weights the healthy accounts share the
messages by smooth weighted round-robin (nginx's: each pick adds every
weight to its account's counter, takes the largest, and subtracts the total
from it), so a down account's share goes to the others and comes back with
it. The counters are per route and per process.

An account that refused a connection (the request never reached it) is
avoided by this process for :data:`AVOID_AFTER_REFUSAL` seconds, so the
message given back for it goes out on another account at once rather than
waiting for the breaker to count enough refusals to open.

Everything here is in memory: the health reads are made once per batch by
the sender (:mod:`worker.sending`), which passes the set of down accounts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace

from providers.routes import Route
from worker.claims import Claimed

AVOID_AFTER_REFUSAL = 2.0  # seconds this process avoids an account that refused a connection


@dataclass(frozen=True, slots=True)
class Unroutable:
    """The routes of some claimed messages have no healthy account."""

    messages: list[Claimed]


@dataclass
class Router:
    """The routes of the providers file and this process's round-robin state."""

    routes: Mapping[str, Route]
    monotonic: Callable[[], float] = time.monotonic
    _current: dict[str, dict[str, int]] = field(default_factory=dict)
    _avoid_until: dict[str, float] = field(default_factory=dict)

    def accounts(self) -> set[str]:
        """Every account some route may choose."""
        return {a for route in self.routes.values() for a in route.accounts}

    def held_routes(self, down: Collection[str]) -> set[str]:
        """Routes whose every account is down: their messages are not claimed."""
        return {
            name for name, route in self.routes.items() if all(a in down for a in route.accounts)
        }

    def is_routed(self, message: Claimed) -> bool:
        """Whether the account is chosen at send time (a route this file still has)."""
        return message.route is not None and message.route in self.routes

    def avoid(self, account: str) -> None:
        """``account`` refused a connection: prefer the others for a moment."""
        self._avoid_until[account] = self.monotonic() + AVOID_AFTER_REFUSAL

    def healthy(self, route: Route, down: Collection[str]) -> list[str]:
        """The route's accounts that may take a message now, in route order.

        An account this process avoids after a refusal counts only when
        nothing else of the route is healthy.
        """
        up = [a for a in route.accounts if a not in down]
        now = self.monotonic()
        preferred = [a for a in up if self._avoid_until.get(a, 0.0) <= now]
        return preferred or up

    def has_other(self, message: Claimed, down: Collection[str]) -> bool:
        """Whether the message's route has a healthy account besides its current
        one that has not refused a connection lately (two unreachable accounts:
        the usual retry rule, not an endless swap)."""
        if message.route is None or message.route not in self.routes:
            return False
        now = self.monotonic()
        return any(
            a != message.provider and a not in down and self._avoid_until.get(a, 0.0) <= now
            for a in self.routes[message.route].accounts
        )

    def assign(
        self, messages: Iterable[Claimed], down: Collection[str], probing: Collection[str] = ()
    ) -> tuple[list[Claimed], list[Claimed]]:
        """``(to send, unroutable)``: each routed message with its account chosen;
        unrouted ones unchanged. Unroutable: no account of its route is healthy.

        An account in ``probing`` (breaker open, its probe due) gets one
        message of the batch, the probe, while another account can take the
        rest: the others would only be given back until the probe answers.
        """
        chosen: list[Claimed] = []
        stuck: list[Claimed] = []
        healthy: dict[str, list[str]] = {}
        probed: set[str] = set()
        for message in messages:
            if not self.is_routed(message):
                chosen.append(message)
                continue
            assert message.route is not None
            route = self.routes[message.route]
            up = healthy.get(route.name)
            if up is None:
                up = healthy[route.name] = self.healthy(route, down)
            if not up:
                stuck.append(message)
                continue
            offer = [a for a in up if a not in probed] or up
            account = offer[0] if route.weights is None else self._weighted(route, offer)
            if account in probing:
                probed.add(account)
            if account != message.provider:
                message = replace(message, provider=account)
            chosen.append(message)
        return chosen, stuck

    def _weighted(self, route: Route, up: list[str]) -> str:
        assert route.weights is not None
        weight = dict(zip(route.accounts, route.weights, strict=True))
        current = self._current.setdefault(route.name, dict.fromkeys(route.accounts, 0))
        for account in route.accounts:
            if account not in up:
                current[account] = 0  # comes back with its configured share, no burst
        total = 0
        for account in up:
            current[account] += weight[account]
            total += weight[account]
        best = max(up, key=lambda a: current[a])  # first in route order on a tie
        current[best] -= total
        return best
