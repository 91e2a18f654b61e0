"""``smsq fleet``: see what the workers are doing and act on it.

``status``, ``events`` (accounts down and up, pauses),
``pause``/``resume`` a provider, ``retry`` final messages,
``reconcile`` (the sweeper, now), ``purge`` a queue. The work is in
:mod:`worker.fleet`; this module only builds the connections, asks for
confirmation and prints. Runbook: ``docs/operations.md``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import redis
import typer
from redis.backoff import NoBackoff
from redis.retry import Retry
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from models.db import make_engine, make_sessionmaker
from models.status import MessageStatus
from smsq.cli.common import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Failure,
    JsonFlag,
    console,
    emit_json,
    err,
    guarded,
    now,
    parse_duration,
    quiet_logs,
    when,
)
from smsq.core.names import QUEUES
from smsq.core.publisher import Publisher, TaskPublisher, client_app
from smsq.core.settings import Settings, get_settings
from worker import fleet, fleet_events

fleet_app = typer.Typer(
    help="The worker fleet: status, events, pause/resume a provider, retry, reconcile, purge.",
    no_args_is_help=True,
)

WATCH_INTERVAL = 2.0  # seconds between refreshes of ``status --watch``
REDIS_TIMEOUT = 2.0  # an operator command answers, even when Redis does not


@dataclass
class FleetContext:
    """The connections a fleet command uses; tests build their own."""

    settings: Settings
    sessions: Callable[[], Session]
    store: redis.Redis | None
    broker: redis.Redis | None
    workers: Callable[[], list[fleet.WorkerInfo]] | None
    publisher: Publisher
    purge: Callable[[str], int]
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in self.closers:
            close()


def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=REDIS_TIMEOUT,
        socket_timeout=REDIS_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )


def _default_context() -> FleetContext:
    settings = get_settings()
    engine = make_engine(settings.database_url)
    sessions: sessionmaker[Session] = make_sessionmaker(engine)
    store = _redis(settings.redis_url)
    broker_url = settings.effective_broker_url
    broker = _redis(broker_url) if broker_url.startswith(("redis://", "rediss://")) else None
    # Raises when the broker does not take a task: the command says so.
    publisher = TaskPublisher(lambda: client_app(broker_url), fail_soft=False)
    closers: list[Callable[[], None]] = [publisher.close, store.close, engine.dispose]
    if broker is not None:
        closers.append(broker.close)
    return FleetContext(
        settings=settings,
        sessions=sessions,
        store=store,
        broker=broker,
        workers=lambda: fleet.inspect_workers(publisher.app),
        publisher=publisher,
        purge=lambda queue: fleet.purge_queue(publisher.app, queue),
        closers=closers,
    )


# The seam tests replace: how a command gets its connections.
context_factory: Callable[[], FleetContext] = _default_context


@contextmanager
def open_context() -> Iterator[FleetContext]:
    quiet_logs()
    ctx = context_factory()
    try:
        yield ctx
    finally:
        ctx.close()


def _require(value: redis.Redis | None, what: str) -> redis.Redis:
    if value is None:
        raise Failure(f"{what} is not a Redis smsq can reach", code="unavailable")
    return value


# --- status ------------------------------------------------------------------


def _gather(ctx: FleetContext) -> fleet.FleetStatus:
    with ctx.sessions() as session:
        return fleet.fleet_status(
            session,
            settings=ctx.settings,
            store=ctx.store,
            broker=ctx.broker,
            workers=ctx.workers,
            now=now(),
        )


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def render_status(status: fleet.FleetStatus) -> Group:
    """The status as rich tables (also what ``--watch`` refreshes)."""
    parts: list[Any] = []
    workers = Table("worker", "queues", title=f"smsq fleet at {when(status.at)}")
    if status.workers is None:
        workers.add_row("[red]?[/red]", "the broker could not be asked")
    elif not status.workers:
        workers.add_row("[yellow]none answered[/yellow]", "-")
    for worker in status.workers or []:
        workers.add_row(escape(worker.name), ", ".join(worker.queues))
    parts.append(workers)

    queues = Table("queue", "tasks in broker", "due rows", "oldest due", title="queues")
    for q in status.queues:
        queues.add_row(
            q.name,
            "-" if q.depth is None else f"{q.depth:,}",
            f"{q.due_messages:,}",
            _age(q.oldest_due_seconds),
        )
    parts.append(queues)

    providers = Table(
        "provider",
        "state",
        "breaker",
        "rate/s (configured)",
        "tokens",
        "sent/s 1m",
        "sent/s 5m",
        "failed last hour, by code",
        title="providers",
    )
    for p in status.providers:
        state = {True: "[red]paused[/red]", False: "running", None: "?"}[p.paused]
        errors = ", ".join(f"{code}: {n}" for code, n in p.errors_last_hour.items()) or "-"
        providers.add_row(
            escape(p.name),
            state,
            _breaker(p),
            f"{_num(p.rate)} ({_num(p.configured_rate)})",
            f"{_num(p.tokens)} / {p.burst}",
            _num(p.sent_per_second_1m, 2),
            _num(p.sent_per_second_5m, 2),
            errors,
        )
    parts.append(providers)

    if status.routes:
        parts.append(_routes_table(status.routes))
    if status.recent_events:
        parts.append(_events_table(status.recent_events, title="recent fleet events"))

    s = status.scheduled
    parts.append(
        f"sent/s: {status.sent_per_second_1m:.2f} (1 min), {status.sent_per_second_5m:.2f} "
        f"(5 min)   unknown: {status.unknown:,}   scheduled: {s.messages:,} messages, "
        f"{s.campaigns:,} campaigns (next {when(s.next_send_at)})"
    )
    for problem in status.problems:
        parts.append(f"[yellow]warning:[/yellow] {escape(problem)}")
    return Group(*parts)


def _routes_table(routes: list[fleet.RouteInfo]) -> Table:
    """Each route's accounts, in order: health, weight, share of the last minute."""
    table = Table(
        "route", "for", "account", "healthy", "weight", "sent 1m", "share 1m", title="routes"
    )
    for route in routes:
        conditions = [
            ", ".join(values)
            for values in (route.kinds, route.countries, route.prefixes)
            if values is not None
        ]
        for i, account in enumerate(route.accounts):
            healthy = {True: "yes", False: "[red]down[/red]", None: "?"}[account.healthy]
            share = account.share_last_minute
            table.add_row(
                escape(route.name) if i == 0 else "",
                escape("; ".join(conditions) or "everything") if i == 0 else "",
                escape(account.name),
                healthy,
                "-" if account.weight is None else str(account.weight),
                f"{account.sent_last_minute:,}",
                "-" if share is None else f"{share:.0%}",
            )
    return table


def _events_table(events: list[fleet_events.FleetEvent], *, title: str) -> Table:
    table = Table("at", "account", "event", "by", "routes", "reason", title=title)
    for event in events:
        colour = "red" if event.event in ("down", "paused") else "green"
        table.add_row(
            when(event.at),
            escape(event.account),
            f"[{colour}]{escape(event.event)}[/{colour}]",
            escape(event.by),
            escape(", ".join(event.routes) or "-"),
            escape(event.reason),
        )
    return table


def _breaker(p: fleet.ProviderInfo) -> str:
    """``closed``, or the open state in red with since when (the outage's start)."""
    if p.breaker is None:
        return "?"
    if p.breaker == "closed":
        return "closed"
    return f"[red]{p.breaker}[/red] since {when(p.breaker_since)}"


@fleet_app.command("status")
def status_command(
    watch: Annotated[
        bool, typer.Option("--watch", help=f"refresh every {WATCH_INTERVAL:g} s until Ctrl-C")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Workers, queues, provider buckets, send rates, errors, unknown outcomes.

    Example: [bold]smsq fleet status --watch[/bold]
    """
    with guarded(as_json):
        if watch and as_json:
            raise Failure("--watch and --json cannot be combined", exit_code=EXIT_USAGE)
        with open_context() as ctx:
            if as_json:
                emit_json(_gather(ctx))
                return
            if not watch:
                console.print(render_status(_gather(ctx)))
                return
            try:
                with Live(render_status(_gather(ctx)), console=console) as live:
                    while True:
                        time.sleep(WATCH_INTERVAL)
                        live.update(render_status(_gather(ctx)))
            except KeyboardInterrupt:
                raise typer.Exit(EXIT_INTERRUPTED) from None


@fleet_app.command("events")
def events_command(
    since: Annotated[
        str | None, typer.Option("--since", help="after: 30m, 2h, 1d, or an ISO time")
    ] = None,
    provider: Annotated[str | None, typer.Option("--provider", help="only this account")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="at most this many, newest")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Accounts going down and back up (circuit breaker), paused and resumed.

    Oldest first. Each event names the routes whose split changed with it: a
    down account's share of a route goes to its other accounts until it is up.

    Example: [bold]smsq fleet events --since 1h[/bold]
    """
    with guarded(as_json), open_context() as ctx:
        store = _require(ctx.store, "the throttle store (SMSQ_REDIS_URL)")
        after = parse_since(since, at=now()) if since is not None else None
        try:
            events = fleet_events.list_events(
                store, ctx.settings.routes, since=after, account=provider, limit=limit
            )
        except redis.RedisError as exc:
            raise Failure(f"throttle store: {type(exc).__name__}", code="unavailable") from None
        if as_json:
            emit_json({"events": events})
            return
        if not events:
            console.print("no fleet events" + (" in that time" if since else ""))
            return
        console.print(_events_table(events, title="fleet events"))


# --- pause / resume ----------------------------------------------------------

ProviderArg = Annotated[str, typer.Argument(help="provider account name (smsq config)")]


def _switch(provider: str, as_json: bool, *, paused: bool) -> None:
    with guarded(as_json), open_context() as ctx:
        store = _require(ctx.store, "the throttle store (SMSQ_REDIS_URL)")
        action = fleet.pause if paused else fleet.resume
        try:
            changed = action(ctx.settings, store, provider)
        except fleet.UnknownProvider as exc:
            raise Failure(str(exc), code="not_found", exit_code=EXIT_USAGE) from None
        except redis.RedisError as exc:
            raise Failure(f"throttle store: {type(exc).__name__}", code="unavailable") from None
        if as_json:
            emit_json({"provider": provider, "paused": paused, "changed": changed})
            return
        word = "paused" if paused else "resumed"
        already = "" if changed else f" (it was already {'paused' if paused else 'running'})"
        console.print(f"provider {escape(provider)} {word}{already}")
        if paused:
            console.print(
                "workers take none of its tokens from their next request; its messages "
                "stay queued. Undo with: smsq fleet resume " + escape(provider)
            )


@fleet_app.command("pause")
def pause_command(provider: ProviderArg, as_json: JsonFlag = False) -> None:
    """Stop sending through PROVIDER, fleet-wide, within a second; messages stay queued.

    Example: [bold]smsq fleet pause panel[/bold]
    """
    _switch(provider, as_json, paused=True)


@fleet_app.command("resume")
def resume_command(provider: ProviderArg, as_json: JsonFlag = False) -> None:
    """Send through PROVIDER again (its queued messages go out within about 10 s).

    Example: [bold]smsq fleet resume panel[/bold]
    """
    _switch(provider, as_json, paused=False)


# --- retry -------------------------------------------------------------------


def parse_since(value: str, *, at: dt.datetime) -> dt.datetime:
    """``30m``, ``2h``, ``1d`` ago, or an ISO 8601 time with a zone."""
    ago = parse_duration(value)
    if ago is not None:
        return at - ago
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise Failure(
            "use a duration (30m, 2h, 1d) or an ISO 8601 time with a zone",
            code="invalid_field",
            exit_code=EXIT_USAGE,
            field="since",
        )
    return parsed


@fleet_app.command("retry")
def retry_command(
    status: Annotated[
        list[str],
        typer.Option("--status", help="failed (default), expired or undelivered; repeatable"),
    ] = ["failed"],  # noqa: B006 - Typer reads the default, never mutates it
    code: Annotated[int | None, typer.Option("--code", help="only this provider code")] = None,
    campaign: Annotated[str | None, typer.Option("--campaign", help="only this campaign")] = None,
    provider: Annotated[str | None, typer.Option("--provider", help="only this account")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="ended after: 30m, 2h, 1d, or an ISO time")
    ] = None,
    validity: Annotated[
        int | None,
        typer.Option("--validity", min=1, help="new validity from now, seconds"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only count")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Re-queue final messages (e.g. code 9 after a credit top-up) as if new.

    Counts first (--dry-run stops there), then asks (or --yes). Attempts,
    error code and end time are reset; with --validity the message is valid
    that long from now, else a message past its validity expires at once.

    Example: [bold]smsq fleet retry --status failed --code 9 --since 2h[/bold]
    """
    with guarded(as_json):
        statuses: list[MessageStatus] = []
        for name in status:
            try:
                statuses.append(MessageStatus(name))
            except ValueError:
                raise Failure(
                    f"not a status: {name!r}", exit_code=EXIT_USAGE, field="status"
                ) from None
        at = now()
        flt = fleet.RetryFilter(
            statuses=tuple(statuses),
            code=code,
            campaign_id=campaign,
            provider=provider,
            since=parse_since(since, at=at) if since is not None else None,
        )
        if as_json and not (dry_run or yes):
            raise Failure("--json needs --dry-run or --yes (no prompt)", exit_code=EXIT_USAGE)
        with open_context() as ctx:
            with ctx.sessions() as session:
                found = fleet.find_retryable(session, flt, now=at)
            if not as_json:
                console.print(f"{found.matched:,} messages match")
                if found.past_validity and validity is None:
                    console.print(
                        f"[yellow]{found.past_validity:,} of them are past their validity and "
                        "will expire at once; give --validity SECONDS to send them[/yellow]"
                    )
            if dry_run or found.matched == 0:
                if as_json:
                    emit_json({"dry_run": dry_run, "matched": found.matched, "requeued": 0})
                return
            if not yes and not typer.confirm(f"Re-queue {found.matched:,} messages?"):
                console.print("nothing changed")
                raise typer.Exit(EXIT_FAILURE)
            with ctx.sessions() as session:
                try:
                    done = fleet.requeue(session, flt, now=at, validity=validity)
                except fleet.RetryNotAllowed as exc:
                    raise Failure(str(exc), code="not_allowed") from None
            published = _publish_requeued(ctx, done)
        result = {
            "dry_run": False,
            "matched": done.matched,
            "requeued": done.requeued_count,
            "reopened_campaigns": done.reopened_campaigns,
            "published": published,
        }
        if as_json:
            emit_json(result)
            return
        console.print(f"re-queued {done.requeued_count:,} messages")
        if done.reopened_campaigns:
            console.print(f"campaigns running again: {', '.join(done.reopened_campaigns)}")
        if not published:
            err.print(
                "[yellow]warning:[/yellow] the broker did not take the tasks; the rows are "
                "queued and the sweeper sends them (or run: smsq fleet reconcile)"
            )


def _publish_requeued(ctx: FleetContext, done: fleet.RetryResult) -> bool:
    try:
        fleet.publish_batches(ctx.publisher, done.requeued, ctx.settings.batch_size)
    except Exception:
        # The rows are committed as queued: the sweeper re-enqueues them.
        return False
    return True


# --- reconcile / purge -------------------------------------------------------


@fleet_app.command("reconcile")
def reconcile_command(as_json: JsonFlag = False) -> None:
    """Run the sweeper now: re-enqueue lost work, mark dead sends unknown, finish campaigns.

    Example: [bold]smsq fleet reconcile[/bold]
    """
    with guarded(as_json), open_context() as ctx:
        try:
            report = fleet.reconcile(
                ctx.sessions,
                settings=ctx.settings,
                broker=ctx.broker,
                publisher=ctx.publisher,
                now=now(),
                store=ctx.store,
            )
        except redis.RedisError as exc:
            raise Failure(f"broker: {type(exc).__name__}", code="unavailable") from None
        if as_json:
            emit_json(report)
            return
        table = Table("what", "count", title="reconcile")
        table.add_row("broker data lost (marker missing)", "yes" if report.broker_lost else "no")
        table.add_row("queued messages re-enqueued", f"{report.requeued:,}")
        table.add_row("dead workers' unsent rows -> queued", f"{report.dead_owner_requeued:,}")
        table.add_row("dead workers' sent rows -> unknown", f"{report.dead_owner_unknown:,}")
        table.add_row("sends whose lease ran out -> unknown", f"{report.leases_expired:,}")
        table.add_row("unknown messages resent once", f"{report.resend_unknown:,}")
        table.add_row("campaigns restarted", f"{report.restarted_campaigns:,}")
        table.add_row("campaigns cancelled: upload stopped", f"{report.stalled_uploads:,}")
        table.add_row("tasks published", f"{report.tasks_published:,}")
        console.print(table)


@fleet_app.command("purge")
def purge_command(
    queue: Annotated[str, typer.Argument(help=f"one of: {', '.join(QUEUES)}")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Delete the tasks waiting in QUEUE; the rows stay queued for reconcile.

    The message rows are untouched: `smsq fleet reconcile` (or the next
    sweep, once the queue is empty) re-enqueues them.

    Example: [bold]smsq fleet purge campaign[/bold]
    """
    with guarded(as_json):
        if queue not in QUEUES:
            raise Failure(
                f"unknown queue {queue!r}; known: {', '.join(QUEUES)}",
                exit_code=EXIT_USAGE,
                field="queue",
            )
        if as_json and not yes:
            raise Failure("--json needs --yes (no prompt)", exit_code=EXIT_USAGE)
        if not yes and not typer.confirm(
            f"Delete every task waiting in the {queue!r} queue? (rows stay queued)"
        ):
            console.print("nothing changed")
            raise typer.Exit(EXIT_FAILURE)
        with open_context() as ctx:
            try:
                purged = ctx.purge(queue)
            except Exception as exc:
                raise Failure(f"broker: {type(exc).__name__}", code="unavailable") from None
        if as_json:
            emit_json({"queue": queue, "purged": purged})
            return
        console.print(
            f"purged {purged:,} tasks from {queue}; the rows stay queued "
            "(smsq fleet reconcile re-enqueues them)"
        )
