"""Which route and account a message is stored with: the one place of the rule.

- An explicit ``provider=`` names an account (that account only, no route:
  as before routes existed) or a route by its name (that route).
- Otherwise the first route of the providers file whose conditions all hold
  (:meth:`providers.routes.Route.takes_kind`, ``takes_number``: the kind, the
  destination's country, its E.164 prefix); none: ``SMSQ_DEFAULT_PROVIDER``.

A message stored on a route gets the route's name in ``route`` and its first
account in ``provider``; the worker chooses the account when it sends (issue
11). Pure functions over the settings, no I/O.

Speed: a campaign matches every row. :class:`Routing` is built once per
request; when the number cannot change the answer (an explicit name, no
routes, or a first route for the kind without countries or prefixes) it is
:attr:`Routing.fixed` and no row does any work. Otherwise only the routes
that can still match are tried, and the country is looked up only when a
route asks for one (:func:`producer.numbers.region_of`, ~1 µs).
"""

from __future__ import annotations

from dataclasses import dataclass

from models.status import MessageKind
from producer.errors import InvalidField
from producer.numbers import region_of
from producer.validation import resolve_provider
from providers.routes import Route, carriage_problem
from smsq.core.settings import Settings


@dataclass(frozen=True, slots=True)
class Destination:
    """What a message row is stored with: ``provider`` and ``route``."""

    provider: str
    route: str | None = None


@dataclass(frozen=True, slots=True)
class Routing:
    """Where the messages of one request go: :meth:`index` of a number into
    :attr:`destinations`. ``routes[i]`` is the route of ``destinations[i]``;
    the last destination is the fallback (``SMSQ_DEFAULT_PROVIDER`` or the
    last unconditional route)."""

    destinations: tuple[Destination, ...]
    routes: tuple[Route, ...]  # the routes still to try, one per destination but the last
    needs_country: bool  # some route has countries
    # Per destination: (field, reason) when its route cannot carry the message.
    problems: tuple[tuple[str, str] | None, ...] = ()

    @property
    def fixed(self) -> Destination | None:
        """The one destination of every number, when the number does not matter."""
        return self.destinations[0] if len(self.destinations) == 1 else None

    def index(self, number: str) -> int:
        """The position in :attr:`destinations` of ``number``'s (E.164) destination.

        As :func:`match_route`, cheaper: a route's prefixes are tried before
        its countries, and the country is looked up once, when a route first
        needs it.
        """
        if len(self.destinations) == 1:
            return 0
        country: str | None = None
        looked_up = False
        for i, route in enumerate(self.routes):
            if route.prefixes is not None and not number.startswith(route.prefixes):
                continue
            if route.countries is not None:
                if not looked_up:
                    country, looked_up = region_of(number), True
                if country not in route.countries:
                    continue
            return i
        return len(self.routes)

    def destination(self, number: str) -> Destination:
        """``number``'s destination; InvalidField if its route cannot carry the message."""
        index = self.index(number)
        problem = self.problems[index] if self.problems else None
        if problem is not None:
            raise InvalidField(*problem)
        return self.destinations[index]


def match_route(
    routes: dict[str, Route] | tuple[Route, ...], kind: MessageKind, number: str
) -> Route | None:
    """The first route taking a ``kind`` message to ``number`` (E.164), or None.

    The reference rule; :class:`Routing` gives the same answer faster.
    """
    candidates = routes.values() if isinstance(routes, dict) else routes
    country = region_of(number)
    for route in candidates:
        if route.takes_kind(kind) and route.takes_number(number, country):
            return route
    return None


def resolve_routing(
    name: str | None,
    kind: MessageKind,
    settings: Settings,
    *,
    flash: bool = False,
    sender: str | None = None,
    every_number: bool = False,
) -> Routing:
    """Where ``kind`` messages asked for ``name`` go; InvalidField if nowhere.

    A route that cannot carry the message (``flash``, its own ``sender``) is
    refused: here when every number goes to it, else for the numbers that
    match it (:meth:`Routing.destination`). ``every_number`` refuses here if
    any number could match it: a campaign is refused before its first row.
    """
    routes = settings.routes
    if name is not None:
        name = resolve_provider(name, settings)
        if name in settings.providers:
            return _fixed(Destination(name))
        route = routes[name]
        _refuse(_carriage(route, settings, flash=flash, sender=sender))
        return _fixed(Destination(route.accounts[0], route.name))
    reachable: list[Route] = []
    fallback: Route | None = None
    for route in routes.values():
        if not route.takes_kind(kind):
            continue
        if not route.conditional:
            fallback = route
            break
        reachable.append(route)
    problems = tuple(
        _carriage(route, settings, flash=flash, sender=sender) if route else None
        for route in (*reachable, fallback)
    )
    if every_number or not reachable:
        for problem in problems:
            _refuse(problem)
    last = (
        Destination(fallback.accounts[0], fallback.name)
        if fallback is not None
        else Destination(settings.default_provider_name)
    )
    return Routing(
        destinations=(*(Destination(r.accounts[0], r.name) for r in reachable), last),
        routes=tuple(reachable),
        needs_country=any(r.countries is not None for r in reachable),
        problems=problems if any(problems) else (),
    )


def _fixed(destination: Destination) -> Routing:
    return Routing(destinations=(destination,), routes=(), needs_country=False)


def _carriage(
    route: Route, settings: Settings, *, flash: bool, sender: str | None
) -> tuple[str, str] | None:
    return carriage_problem(route, settings.providers, flash=flash, sender=sender)


def _refuse(problem: tuple[str, str] | None) -> None:
    if problem is not None:
        raise InvalidField(*problem)
