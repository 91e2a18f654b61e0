"""Routing across provider accounts on the real stack: issue 11's "Done when" figures.

Every run starts a fresh stack (``bench/_chaos_stack.py``: a scratch
database, an empty Redis, ``smsq api``, one Celery prefork worker consuming
``otp,transactional,campaign`` with ``--workers`` pool processes, Celery
beat) with two panelsms accounts ``A`` and ``B`` (same sender), each on its
own simulator process (``bench/_simulator.py``, answering in
``--latency-ms``), so one account's process can be stopped alone.
Campaigns go in through ``POST /v1/campaigns``; delivery reports are off,
so ``sent`` is final. Counting is at the providers (each simulator's
``per_number``, kept when its process is stopped) and in the database.

- ``kill-a``: route ``[A, B]`` (kind campaign), both at ``--rate``/s (burst
  the same), a ``--kill-size`` campaign; A's simulator process is stopped
  ``--kill-after`` s in (SIGTERM: it answers what is in flight, refuses new
  connections and exits, its stats kept) while small campaigns trickle in
  at ``--trickle`` msg/s, A stays away ``--down`` s, then starts again. The
  same run without the fault comes first. Figures: lost, duplicates, time to
  finish against the fault-free run, connection attempts per second reaching
  A's port from 10 s after the kill (SYNs counted on the loopback interface:
  ``bench/_syn_counter.py``), B's sends per second against its rate while it
  carries the route, and the seconds from A's restart to A's first send.
- ``weights``: route ``[A, B]`` weights ``[70, 30]``, a ``--weights-size``
  campaign: each account's share; then B's process stopped and a
  ``--b-down-size`` campaign: A carries it at its rate (its busiest clock
  second and its sustained rate against rate and rate + burst).
- ``countries``: prefix and country routes to A and B, numbers of 10
  countries (``--countries-size``): messages on the wrong account, at the
  simulators and in the database, against an oracle computed here with
  libphonenumber's parser (not smsq's matching).
- ``cpu``: ``--cpu-runs`` pairs, alternating which goes first, of the same
  ``--cpu-size`` campaign at ``--cpu-rate``/s per account: with a route
  ``[A, B]`` weights ``[1, 1]``, and on a providers file without routes as
  two half campaigns naming A and B. CPU (user + system from /proc) of every
  smsq process group (worker and its pool, beat, api; not the simulators,
  PostgreSQL or Redis) from the submit until every row is sent, per sent
  message; medians and their ratio. ``--cpu-mode single`` compares a route
  ``[A]`` with naming A instead: the routing work without mixing two
  accounts' traffic in one batch.

    .venv/bin/python bench/routing.py                     # everything, full size (~12 min)
    .venv/bin/python bench/routing.py --quick             # shortened (~3 min)
    .venv/bin/python bench/routing.py --scenario cpu --json routing.json
    .venv/bin/python bench/routing.py --scenario cpu --cpu-mode single --cpu-runs 3

PostgreSQL and Redis are the benchmark's own (``bench/_services.py``). The
SYN count needs root or CAP_NET_RAW; without it that figure is reported as
not measured. The exit code is 1 if a figure missed its target.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import phonenumbers
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._chaos_stack import PENDING, ChaosStack
from bench._services import OwnRedis, ScratchPostgres
from bench._stack import group_cpu_seconds, scratch_dir
from bench._syn_counter import SynCounter
from models.tables import Message

SIMS = ("A", "B")
FAILED_FINAL = ("failed", "expired", "rejected", "suppressed", "cancelled")
SETTLED_PENDING = tuple(s for s in PENDING if s != "unknown")
# The targets.
EXTRA_SECONDS = 15.0  # kill-a: finished within fault-free + this
REQUESTS_LIMIT = 1.0  # kill-a: connection attempts/s to A from 10 s after the kill
BUSY_TARGET = 0.95  # kill-a: B's sends/s over its rate while it carries the route
RETURN_LIMIT = 30.0  # kill-a: A's restart to its first new send
SHARE_POINTS = 3.0  # weights: each share within this many points
CPU_RATIO_LIMIT = 1.03

QUICK = {
    "kill_size": 3000,
    "down": 30.0,
    "weights_size": 2000,
    "b_down_size": 1500,
    "countries_size": 1000,
    "cpu_size": 4000,
    "cpu_runs": 3,
}
FULL = {
    "kill_size": 3000,
    "down": 45.0,
    "weights_size": 5000,
    "b_down_size": 3000,
    "countries_size": 3000,
    "cpu_size": 10000,
    "cpu_runs": 5,
}

ACCOUNT = """
[providers.{name}]
adapter = "panelsms"
url = "{{sim_{name}}}/sendMtSms.php"
user = "{user}@example.com"
api_key = "key-{user}"
sender = "SMSQ"
response_type = "json"
rate = {rate}
burst = {burst}
dlr = false
"""


def providers_file(rate: float, burst: int, routes: str = "") -> str:
    """Accounts A and B, each on its own simulator, and ``routes`` (TOML, no braces):
    a template for :class:`ChaosStack` (``{sim_A}``, ``{sim_B}``)."""
    accounts = "".join(
        ACCOUNT.format(name=name, user=name.lower(), rate=rate, burst=burst) for name in SIMS
    )
    return accounts + routes


@dataclass
class Figure:
    """One measured figure and, if the issue sets one, its target."""

    scenario: str
    name: str
    value: float | int | str | None
    target: str = ""
    met: bool | None = None  # None: no target


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(
        self,
        scenario: str,
        name: str,
        value: float | int | str | None,
        target: str = "",
        met: bool | None = None,
    ) -> None:
        self.figures.append(Figure(scenario, name, value, target, met))
        shown = f"{value:.3g}" if isinstance(value, float) else str(value)
        verdict = "" if met is None else ("  ok" if met else "  MISSED")
        print(f"routing: {scenario}: {name} = {shown} {target}{verdict}", file=sys.stderr)


# --- the stack ------------------------------------------------------------------


class RoutingStack(ChaosStack):
    """A chaos stack with accounts A and B on simulators A and B."""

    def __init__(
        self, args: argparse.Namespace, tmp: Path, pg: ScratchPostgres, redis: OwnRedis, toml: str
    ) -> None:
        super().__init__(
            args,
            tmp,
            pg,
            redis,
            providers_template=toml,
            simulators=SIMS,
            env={"SMSQ_DEFAULT_PROVIDER": "A"},
        )
        self.http = httpx.Client(base_url=self.api_url, timeout=120)

    def submit(self, name: str, numbers: list[str], provider: str | None = None) -> None:
        body: dict[str, Any] = {"name": name, "text": "Spring sale today", "recipients": numbers}
        if provider is not None:
            body["provider"] = provider
        response = self.http.post(
            "/v1/campaigns", json=body, headers={"Authorization": f"Bearer {self.key}"}
        )
        if response.status_code != 202 or response.json()["accepted"] != len(numbers):
            raise SystemExit(f"routing: campaign refused: {response.status_code} {response.text}")

    def pending(self, prefix: str, statuses: Iterable[str] = SETTLED_PENDING) -> int | None:
        """Rows to numbers starting with ``prefix`` still in ``statuses`` (None: no database)."""
        try:
            with self.engine.connect() as conn:
                query = (
                    select(func.count())
                    .select_from(Message)
                    .where(Message.status.in_(list(statuses)), Message.to.startswith(prefix))
                )
                return int(conn.execute(query).scalar_one())
        except SQLAlchemyError:  # PostgreSQL busy or away: ask again
            return None

    def wait_done(self, prefix: str, deadline: float, statuses: Iterable[str]) -> float | None:
        """time.time() once nothing to ``prefix`` is in ``statuses``; None at the deadline."""
        wanted = tuple(statuses)
        while time.time() < deadline:
            if self.pending(prefix, wanted) == 0:
                return time.time()
            time.sleep(0.1)
        return None

    def rows(self) -> list[tuple[str, str, str, str | None]]:
        """(to, status, provider, route) of every message."""
        with self.engine.connect() as conn:
            query = select(Message.to, Message.status, Message.provider, Message.route)
            return [(r[0], r[1], r[2], r[3]) for r in conn.execute(query)]

    def sends(self) -> dict[str, Counter[str]]:
        """Sends by destination digits at each simulator (every process of it)."""
        return {name: Counter(self.sim_stats(name)["per_number"]) for name in SIMS}

    def per_second(self, name: str) -> Counter[int]:
        """Sends by clock second at simulator ``name`` (every process of it)."""
        parts = [*self.past_stats[name]]
        live = self.live_stats(name)
        if live is not None:
            parts.append(live)
        seconds: Counter[int] = Counter()
        for part in parts:
            seconds.update({int(s): n for s, n in part["per_second"].items()})
        return seconds

    def close(self) -> None:
        self.http.close()
        super().close()


def numbers(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:06d}" for i in range(n)]


def loss_and_duplicates(stack: RoutingStack, prefix: str = "+") -> dict[str, int]:
    """Over rows to ``prefix``: never at a provider and not pending or failed (lost),
    at the providers more than once (duplicates), still unknown or pending."""
    sends = stack.sends()
    total: Counter[str] = sends["A"] + sends["B"]
    lost = duplicates = unknown = pending = wrong_provider = 0
    for to, status, provider, _route in stack.rows():
        if not to.startswith(prefix):
            continue
        digits = to[1:]
        duplicates += total[digits] > 1
        unknown += status == "unknown"
        pending += status in SETTLED_PENDING
        if not total[digits] and status not in FAILED_FINAL and status not in PENDING:
            lost += 1
        # The row names the account of its last attempt: the simulator that got it.
        if total[digits] == 1 and not sends[provider][digits]:
            wrong_provider += 1
    return {
        "lost": lost,
        "duplicates": duplicates,
        "unknown": unknown,
        "pending": pending,
        "row provider not where it was sent": wrong_provider,
    }


# --- kill-a -----------------------------------------------------------------------


class Backlog:
    """(time, rows to ``prefix`` not sent yet) every ``every`` s, in a thread."""

    def __init__(self, stack: RoutingStack, prefix: str, every: float = 0.1) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()

        def run() -> None:
            while not self._stop.wait(every):
                asked = time.time()  # the count is of a moment at or after this
                left = stack.pending(prefix)
                if left is not None:
                    self.samples.append((asked, left))

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def after(self, when: float) -> int | None:
        """The first count asked for at or after ``when``: what was left then, or less."""
        later = [left for t, left in self.samples if t >= when]
        return later[0] if later else None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class Trickle:
    """Small campaigns on the route, ``rate`` messages a second, in a thread."""

    PREFIX = "+4916000"

    def __init__(self, stack: RoutingStack, rate: float) -> None:
        self.stack = stack
        self.rate = rate
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Trickle:
        if self.rate > 0:
            self._thread.start()
        return self

    def _run(self) -> None:
        size = max(1, int(self.rate / 2))
        while not self._stop.wait(size / self.rate):
            batch = [f"{self.PREFIX}{self.sent + i:06d}" for i in range(size)]
            try:
                self.stack.submit(f"trickle-{self.sent}", batch)
            except (httpx.HTTPError, SystemExit):
                continue
            self.sent += size

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)


KILL_ROUTE = """
[[routes]]
name = "failover"
kinds = ["campaign"]
accounts = ["A", "B"]
"""
CAMPAIGN_PREFIX = "+4915123"


def kill_a_run(
    args: argparse.Namespace,
    tmp: Path,
    pg: ScratchPostgres,
    redis: OwnRedis,
    report: Report,
    fault: bool,
    base: float,
) -> float | None:
    """One kill-a run (``fault`` False: the fault-free one); the campaign's seconds."""
    name = "kill-a" if fault else "kill-a fault-free"
    toml = providers_file(args.rate, int(args.rate), KILL_ROUTE)
    stack = RoutingStack(args, tmp / name.replace(" ", "-"), pg, redis, toml)
    syns = SynCounter(stack.sim_ports["A"]).start()
    trickle = Trickle(stack, args.trickle)
    try:
        t0 = time.time()
        stack.submit("kill-a", numbers(CAMPAIGN_PREFIX, args.kill_size))
        backlog = Backlog(stack, CAMPAIGN_PREFIX)
        trickle.start()
        killed = t0 + args.kill_after
        if fault:
            time.sleep(max(0.0, killed - time.time()))
            killed = time.time()
            stack.stop_simulator("A")
        limit = max(base, args.kill_size / args.rate) + 120
        done = stack.wait_done(CAMPAIGN_PREFIX, t0 + limit, SETTLED_PENDING)
        backlog.stop()
        seconds = None if done is None else done - t0
        report.add(name, "campaign seconds (no row left to send; unknown aside)", seconds)
        if not fault:
            trickle.stop()
            stack.wait_done("+", time.time() + 60, PENDING)
            figures = loss_and_duplicates(stack)
            report.add(name, "lost", figures["lost"], "= 0", figures["lost"] == 0)
            report.add(name, "duplicates", figures["duplicates"], "= 0", not figures["duplicates"])
            return seconds
        if seconds is not None:
            budget = base + EXTRA_SECONDS
            report.add(
                name,
                "campaign seconds over fault-free",
                seconds - base,
                f"<= {EXTRA_SECONDS:.0f} (fault-free {base:.1f} s)",
                seconds <= budget,
            )
        else:
            report.add(name, "campaign seconds over fault-free", None, "never finished", False)
        # B while it carries the route: the whole clock seconds after the
        # kill's own that end with at least a second's worth of the campaign
        # still unsent (B had work for the whole second; the last ones are the
        # campaign running out, not B waiting). The first of them also spends
        # B's burst (its bucket was full since the start): the mean leaves it out.
        b_seconds = stack.per_second("B")
        end = done if done is not None else time.time()
        window = [
            s
            for s in range(int(killed) + 1, int(end) + 1)
            if (backlog.after(s + 1) or 0) >= args.rate
        ]
        busy = [b_seconds.get(s, 0) / args.rate for s in window]
        report.details["kill-a B sends/s over rate, whole seconds with work waiting"] = [
            round(b, 3) for b in busy
        ]
        report.details["kill-a B sends by second from the kill"] = [
            b_seconds.get(s, 0) for s in range(int(killed), int(end) + 1)
        ]
        if len(busy) >= 2:
            mean = statistics.fmean(busy[1:])
            report.add(
                name,
                f"B's bucket busy, mean of {len(busy) - 1} whole seconds after the first",
                mean,
                f">= {BUSY_TARGET}",
                mean >= BUSY_TARGET,
            )
            report.add(name, "B's bucket busy, lowest of those seconds", min(busy[1:]))
        else:
            report.add(name, "B's bucket busy", None, "no whole second to measure", None)
        restart_at = killed + args.down
        time.sleep(max(0.0, restart_at - time.time()))
        if syns.error is None:
            start = killed + 10.0
            count = syns.between(start, restart_at)
            rate = count / max(restart_at - start, 0.1)
            report.details["kill-a connection attempts to A after the kill"] = count
            report.add(
                name,
                f"connection attempts/s to A's port, kill+10 s to restart ({count} in "
                f"{restart_at - start:.0f} s)",
                rate,
                f"<= ~{REQUESTS_LIMIT:.0f}",
                rate <= REQUESTS_LIMIT,
            )
        else:
            report.add(name, "connection attempts/s to A's port", f"not counted: {syns.error}")
        # From the restart command: the simulator's own start-up (about a
        # second) counts against smsq, a conservative figure.
        spawned = time.time()
        stack.start_simulator("A")
        first = flowing = None
        while time.time() < spawned + 90 and flowing is None:
            live = stack.live_stats("A")
            accepted = 0 if live is None else live["accepted"]
            if accepted > 0 and first is None:
                first = time.time() - spawned
            if accepted >= max(args.trickle, 1):  # a second's worth of the route
                flowing = time.time() - spawned
            time.sleep(0.1)
        report.add(
            name,
            "seconds from A's restart command to its first send",
            first,
            f"<= {RETURN_LIMIT:.0f}",
            first is not None and first <= RETURN_LIMIT,
        )
        report.add(
            name,
            f"... to A's {max(args.trickle, 1):.0f}th send (the route's traffic back)",
            flowing,
            f"<= {RETURN_LIMIT:.0f}",
            flowing is not None and flowing <= RETURN_LIMIT,
        )
        time.sleep(3)  # some traffic on A again
        trickle.stop()
        settled = stack.wait_done("+", time.time() + 60, PENDING)
        figures = loss_and_duplicates(stack)
        for key, value in figures.items():
            target = "= 0" if key in ("lost", "duplicates") else ""
            report.add(name, key, value, target, value == 0 if target else None)
        report.add(name, "everything final after A's return", settled is not None)
        sends = stack.sends()
        report.details["kill-a sends by account"] = {
            n: sum(1 for d in sends[n] if d.startswith(CAMPAIGN_PREFIX[1:])) for n in SIMS
        }
        report.details["kill-a trickle messages"] = trickle.sent
        return seconds
    finally:
        trickle.stop()
        syns.stop()
        stack.close()


def kill_a(
    args: argparse.Namespace, tmp: Path, pg: ScratchPostgres, redis: OwnRedis, report: Report
) -> None:
    base = kill_a_run(args, tmp, pg, redis, report, fault=False, base=0.0)
    if base is None:
        raise RuntimeError("the fault-free run did not finish")
    kill_a_run(args, tmp, pg, redis, report, fault=True, base=base)


# --- weights --------------------------------------------------------------------------

WEIGHTS_ROUTE = """
[[routes]]
name = "split"
kinds = ["campaign"]
accounts = ["A", "B"]
weights = [70, 30]
"""


def weights(
    args: argparse.Namespace, tmp: Path, pg: ScratchPostgres, redis: OwnRedis, report: Report
) -> None:
    name = "weights"
    toml = providers_file(args.rate, int(args.rate), WEIGHTS_ROUTE)
    stack = RoutingStack(args, tmp / name, pg, redis, toml)
    try:
        first, second = "+4915123", "+4915200"
        stack.submit("split", numbers(first, args.weights_size))
        limit = time.time() + args.weights_size / args.rate * 2 + 60
        if stack.wait_done(first, limit, PENDING) is None:
            report.add(name, "first campaign", "did not finish", "", False)
        sends = stack.sends()
        on = {n: sum(1 for d in sends[n] if d.startswith(first[1:])) for n in SIMS}
        total = sum(on.values())
        for account, weight in (("A", 70), ("B", 30)):
            share = 100 * on[account] / max(total, 1)
            report.add(
                name,
                f"{account}'s share, % of {total} ({on[account]} messages)",
                share,
                f"{weight} +/- {SHARE_POINTS:.0f}",
                abs(share - weight) <= SHARE_POINTS,
            )
        stack.stop_simulator("B")
        a_before = set(stack.per_second("A"))
        t0 = time.time()
        stack.submit("b-down", numbers(second, args.b_down_size))
        limit = t0 + args.b_down_size / args.rate * 2 + 60
        done = stack.wait_done(second, limit, SETTLED_PENDING)
        report.add(
            name,
            f"B down: {args.b_down_size} messages, seconds",
            None if done is None else done - t0,
        )
        sends = stack.sends()
        on = {n: sum(1 for d in sends[n] if d.startswith(second[1:])) for n in SIMS}
        report.add(
            name,
            "B down: share on A, %",
            100 * on["A"] / args.b_down_size,
            "= 100",
            on["A"] == args.b_down_size,
        )
        seconds = stack.per_second("A")
        sent_at = [s for s in seconds if s not in a_before and s >= int(t0)]
        if sent_at:
            # Every clock second of the run, the quiet ones too.
            during = [seconds.get(s, 0) for s in range(min(sent_at), max(sent_at) + 1)]
            report.details["weights B down, A sends by second"] = during
            report.add(
                name,
                "B down: A's busiest clock second",
                max(during),
                f"<= rate + burst = {2 * args.rate:.0f}",
                max(during) <= 2 * args.rate,
            )
            # After the burst (the bucket was full): A's rate over the rest.
            rest = during[2:-1]
            if rest:
                sustained = sum(rest) / len(rest)
                # No verdict: what is left of the burst may legally spread here.
                report.add(
                    name,
                    f"B down: A's sends/s over the {len(rest)} whole seconds after the first two",
                    sustained,
                    f"(rate {args.rate:.0f})",
                )
            # A token bucket allows at most rate x k + burst in any k seconds
            # (counted here at the simulator's clock, when it handles a request:
            # a request delayed there moves across a second's boundary).
            excess = max(
                sum(during[i : j + 1]) - args.rate * (j - i + 1)
                for i in range(len(during))
                for j in range(i, len(during))
            )
            report.add(
                name,
                "B down: A's most sends over rate x seconds, any run of whole seconds",
                excess,
                f"<= burst {args.rate:.0f}",
                excess <= args.rate,
            )
        figures = loss_and_duplicates(stack)
        for key in ("lost", "duplicates"):
            report.add(name, key, figures[key], "= 0", figures[key] == 0)
        report.add(name, "left unknown", figures["unknown"])
    finally:
        stack.close()


# --- countries -------------------------------------------------------------------------

COUNTRY_ROUTES = """
[[routes]]
name = "de-151"
prefixes = ["+49151"]
accounts = ["B"]

[[routes]]
name = "dach"
countries = ["DE", "AT", "CH"]
accounts = ["A"]

[[routes]]
name = "west"
countries = ["FR", "GB", "ES", "NL"]
accounts = ["B"]

[[routes]]
name = "north-america"
prefixes = ["+1"]
accounts = ["A"]
"""
COUNTRIES = ("DE", "AT", "CH", "FR", "GB", "ES", "NL", "US", "IT", "PL")


def expected_route(number: str) -> tuple[str, str | None]:
    """The oracle: (account, route) by the file above, with libphonenumber's parser
    (smsq matches with its own compiled lookup; this must agree with it)."""
    if number.startswith("+49151"):
        return "B", "de-151"
    region = phonenumbers.region_code_for_number(phonenumbers.parse(number))
    if region in ("DE", "AT", "CH"):
        return "A", "dach"
    if region in ("FR", "GB", "ES", "NL"):
        return "B", "west"
    if number.startswith("+1"):
        return "A", "north-america"
    return "A", None  # SMSQ_DEFAULT_PROVIDER


def country_numbers(n: int) -> list[str]:
    """About ``n`` valid mobile numbers over 10 countries (German ones on +49151 and +49171)."""
    per = max(1, n // (len(COUNTRIES) + 1))
    found: list[str] = []
    examples = [
        phonenumbers.example_number_for_type(c, phonenumbers.PhoneNumberType.MOBILE)
        for c in COUNTRIES
    ]
    examples.append(phonenumbers.parse("+4917112345678"))  # DE, not +49151
    for example in examples:
        assert example is not None
        base = str(example.national_number)
        head, width = base[:-4], 4
        got = 0
        for i in range(10**width):
            candidate = phonenumbers.parse(f"+{example.country_code}{head}{i:0{width}d}")
            if phonenumbers.is_valid_number(candidate):
                found.append(
                    phonenumbers.format_number(candidate, phonenumbers.PhoneNumberFormat.E164)
                )
                got += 1
                if got == per:
                    break
    return found


def countries(
    args: argparse.Namespace, tmp: Path, pg: ScratchPostgres, redis: OwnRedis, report: Report
) -> None:
    name = "countries"
    rate = max(args.rate, 1000.0)
    toml = providers_file(rate, int(rate), COUNTRY_ROUTES)
    stack = RoutingStack(args, tmp / name, pg, redis, toml)
    try:
        mixed = country_numbers(args.countries_size)
        stack.submit("countries", mixed)
        done = stack.wait_done("+", time.time() + len(mixed) / rate * 3 + 60, PENDING)
        report.add(name, f"{len(mixed)} messages, 10 countries, all final", done is not None)
        sends = stack.sends()
        wrong_sim = wrong_row = wrong_route = 0
        by_route: Counter[str] = Counter()
        for to, _status, provider, route in stack.rows():
            account, route_name = expected_route(to)
            by_route[f"{route_name} -> {account}"] += 1
            digits = to[1:]
            other = "B" if account == "A" else "A"
            wrong_sim += sends[other][digits] > 0 or sends[account][digits] == 0
            wrong_row += provider != account
            wrong_route += route != route_name
        report.details["countries messages by expected route"] = dict(by_route)
        report.add(name, "on the wrong account at the simulators", wrong_sim, "= 0", not wrong_sim)
        report.add(name, "rows naming the wrong account", wrong_row, "= 0", not wrong_row)
        report.add(name, "rows naming the wrong route", wrong_route, "= 0", not wrong_route)
        figures = loss_and_duplicates(stack)
        for key in ("lost", "duplicates"):
            report.add(name, key, figures[key], "= 0", figures[key] == 0)
    finally:
        stack.close()


# --- cpu ----------------------------------------------------------------------------------

CPU_ROUTE = """
[[routes]]
name = "split"
kinds = ["campaign"]
accounts = ["A", "B"]
weights = [1, 1]
"""
# --cpu-mode single: the routing work without the mixed traffic (every
# message on A, with a one-account route or naming A).
CPU_ROUTE_SINGLE = """
[[routes]]
name = "one"
kinds = ["campaign"]
accounts = ["A"]
"""
SMSQ_PROCESSES = ("worker", "beat", "api")


def smsq_cpu(stack: RoutingStack) -> dict[str, float]:
    """CPU seconds of each of smsq's own process groups (never the simulators')."""
    return {n: group_cpu_seconds(stack.named[n].pid) for n in SMSQ_PROCESSES}


def cpu_run(
    args: argparse.Namespace,
    tmp: Path,
    pg: ScratchPostgres,
    redis: OwnRedis,
    routed: bool,
) -> dict[str, float]:
    label = "routes" if routed else "no-routes"
    route = CPU_ROUTE if args.cpu_mode == "split" else CPU_ROUTE_SINGLE
    toml = providers_file(args.cpu_rate, int(args.cpu_rate), route if routed else "")
    named = ("A", "B") if args.cpu_mode == "split" else ("A", "A")
    stack = RoutingStack(args, tmp / f"cpu-{label}", pg, redis, toml)
    # New connections to the providers: a mixed batch keeps two accounts'
    # connections in one pool (SMSQ_SEND_CONCURRENCY per worker process).
    syns = [SynCounter(stack.sim_ports[n]).start() for n in SIMS]
    try:
        time.sleep(2)  # the processes' start-up work is over
        half = args.cpu_size // 2
        first, second = numbers("+4915123", half), numbers("+4915124", args.cpu_size - half)
        before, t0 = smsq_cpu(stack), time.time()
        stack.submit("cpu-1", first, None if routed else named[0])
        stack.submit("cpu-2", second, None if routed else named[1])
        done = stack.wait_done("+", t0 + args.cpu_size / args.cpu_rate * 5 + 120, PENDING)
        after = smsq_cpu(stack)
        cpu = sum(after.values()) - sum(before.values())
        if done is None:
            raise RuntimeError(f"cpu {label}: not every message was sent")
        sent = sum(sum(c.values()) for c in stack.sends().values())
        sends = stack.sends()
        return {
            "cpu_ms_per_message": 1000 * cpu / max(sent, 1),
            "connections_opened": sum(c.between(t0, done) for c in syns),
            **{f"{n}_cpu_s": round(after[n] - before[n], 2) for n in SMSQ_PROCESSES},
            "seconds": done - t0,
            "sent": sent,
            "on_A": sum(sends["A"].values()),
            "on_B": sum(sends["B"].values()),
        }
    finally:
        for counter in syns:
            counter.stop()
        stack.close()


def cpu(
    args: argparse.Namespace, tmp: Path, pg: ScratchPostgres, redis: OwnRedis, report: Report
) -> None:
    name = "cpu"
    runs: dict[str, list[dict[str, float]]] = {"routes": [], "no-routes": []}
    assert args.cpu_runs >= 1
    for i in range(args.cpu_runs):
        order = (True, False) if i % 2 == 0 else (False, True)
        for routed in order:
            result = cpu_run(args, tmp, pg, redis, routed)
            runs["routes" if routed else "no-routes"].append(result)
            print(f"routing: cpu run {i + 1} routed={routed}: {result}", file=sys.stderr)
    report.details["cpu runs"] = runs
    medians = {k: statistics.median(r["cpu_ms_per_message"] for r in v) for k, v in runs.items()}
    for label, median in medians.items():
        listed = " / ".join(f"{r['cpu_ms_per_message']:.3f}" for r in runs[label])
        report.add(name, f"{label}: CPU ms per sent message, median of {listed}", median)
    ratio = medians["routes"] / medians["no-routes"]
    report.add(
        name,
        f"routes / no-routes, medians of {args.cpu_runs} runs each",
        ratio,
        f"<= {CPU_RATIO_LIMIT}",
        ratio <= CPU_RATIO_LIMIT,
    )


# --- main -----------------------------------------------------------------------------------

Scenario = Callable[[argparse.Namespace, Path, ScratchPostgres, OwnRedis, Report], None]
SCENARIOS: dict[str, Scenario] = {
    "kill-a": kill_a,
    "weights": weights,
    "countries": countries,
    "cpu": cpu,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", action="append", choices=list(SCENARIOS), help="repeatable")
    ap.add_argument("--quick", action="store_true", help="shorter runs")
    ap.add_argument("--rate", type=float, default=300.0, help="A's and B's rate (and burst)")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="provider answer time")
    ap.add_argument("--workers", type=int, default=2, help="worker pool processes")
    ap.add_argument("--kill-size", type=int, help="kill-a campaign (3000)")
    ap.add_argument("--kill-after", type=float, default=3.0, help="seconds before A stops")
    ap.add_argument("--down", type=float, help="seconds A stays away (45; quick 30)")
    ap.add_argument("--trickle", type=float, default=20.0, help="kill-a background msg/s")
    ap.add_argument("--weights-size", type=int, help="weighted campaign (5000; quick 2000)")
    ap.add_argument("--b-down-size", type=int, help="campaign with B down (3000; quick 1500)")
    ap.add_argument("--countries-size", type=int, help="mixed list (3000; quick 1000)")
    ap.add_argument("--cpu-size", type=int, help="cpu campaign (10000; quick 4000)")
    ap.add_argument("--cpu-runs", type=int, help="pairs of cpu runs (5; quick 3)")
    ap.add_argument("--cpu-rate", type=float, default=3000.0, help="each account's rate in cpu")
    ap.add_argument(
        "--cpu-mode",
        choices=("split", "single"),
        default="split",
        help="cpu: route [A, B] 1:1 against halves naming A and B (split), or a route [A] "
        "against naming A (single: the routing work alone, no mixed traffic)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the logs' temp dir")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    # What ChaosStack reads of the chaos suite's options.
    args.provider_timeout = 10.0
    args.ingest_stall_after = None
    return args


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)
    tmp = scratch_dir("routing")
    report = Report()
    pg: ScratchPostgres | None = None
    redis: OwnRedis | None = None
    try:
        pg = ScratchPostgres(tmp / "pg")
        redis = OwnRedis(tmp)
        for name in args.scenario or list(SCENARIOS):
            started = time.time()
            print(f"routing: {name}", file=sys.stderr, flush=True)
            try:
                SCENARIOS[name](args, tmp, pg, redis, report)
            except Exception as exc:  # the next scenario gets a fresh stack
                traceback.print_exc()
                report.add(name, "the harness failed", repr(exc), "", False)
            print(f"routing: {name} took {time.time() - started:.0f} s", file=sys.stderr)
    except KeyboardInterrupt:
        print("routing: interrupted, cleaning up", file=sys.stderr)
        return 130
    finally:
        if redis is not None:
            redis.close()
        if pg is not None:
            pg.close()
        if args.keep:
            print(f"routing: logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(table(report.figures))
    for key, value in report.details.items():
        print(f"  {key}: {value}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: v for k, v in vars(args).items() if k != "json"},
                    "figures": [asdict(f) for f in report.figures],
                    "details": report.details,
                },
                indent=2,
                default=str,
            )
        )
    return 1 if any(f.met is False for f in report.figures) else 0


def table(figures: list[Figure]) -> str:
    lines = [f"{'scenario':18} {'figure':72} {'value':>10}  target"]
    lines.append("-" * len(lines[0]) + "-" * 20)
    for f in figures:
        value = f"{f.value:.3f}" if isinstance(f.value, float) else str(f.value)
        verdict = "" if f.met is None else (" ok" if f.met else " MISSED")
        lines.append(f"{f.scenario:18} {f.name:72} {value:>10}  {f.target}{verdict}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
