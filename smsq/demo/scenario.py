"""The demo's scenario, live view and summary (``smsq demo``; see :mod:`smsq.demo`)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
from rich.columns import Columns
from rich.console import Console
from rich.live import Live
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.status import MessageKind
from models.tables import Campaign, Message, utcnow
from producer.api import Producer
from smsq.core.settings import Settings
from smsq.demo.bucket_use import WINDOW, Sample, bucket_use, used_per_second
from smsq.demo.options import DemoOptions
from smsq.demo.outage import ProviderOutage
from smsq.demo.report import (
    Snapshot,
    campaign_by_account,
    otp_latencies,
    percentile,
    snapshot,
    summary,
)
from smsq.demo.stack import EmbeddedStack, StackError, StackOptions
from worker.provider_health import ProviderHealth, breaker_settings
from worker.throttle import BucketState, TokenBucket

CAMPAIGN_ROUTE = "bulk"  # stack.DEMO_ROUTES: campaigns on panel, failing over to brand
CAMPAIGN_PROVIDER = "panel"  # the built-in panelsms account, the route's first
FALLBACK_PROVIDER = "brand"  # the route's second
OTP_PROVIDER = "brand"  # named by the OTPs themselves: never on the campaign's route
OUTAGE_ADAPTER = "panelsms"  # the simulator that goes away: CAMPAIGN_PROVIDER's
CAMPAIGN_TEXT = "Spring sale! 20% off everything today at example.com/shop. Reply STOP to opt out"
REFRESH = 0.5  # seconds between live updates
RATE_WINDOW = 2.0  # seconds the current rate is measured over
CARRIER_WINDOW = 2.0  # seconds of sends that say which account carries the campaign now
# Once everything is sent, wait for the delivery reports still coming in:
# until none is owed, or none came for REPORT_STALL seconds, or REPORT_WAIT_MAX.
REPORT_STALL = 2.0
REPORT_WAIT_MAX = 20.0


@dataclass
class Progress:
    """What the live view shows besides the database snapshot."""

    started: float = field(default_factory=time.monotonic)
    started_at: dt.datetime = field(default_factory=utcnow)
    """The same moment on the wall clock, as the database's times are."""
    samples: deque[tuple[float, int]] = field(default_factory=deque)
    rate_changes: list[dict[str, Any]] = field(default_factory=list)
    otps_submitted: int = 0
    outage: ProviderOutage | None = None
    """The panelsms simulator's outage (None with ``--no-failover``)."""
    breaker_changes: list[dict[str, Any]] = field(default_factory=list)
    """The panel account's breaker as sampled by the live view: each change."""
    bucket_samples: list[Sample] = field(default_factory=list)
    """The panel account's bucket rate and the campaign's queued rows, each refresh."""

    def breaker(self, now: float, state: str) -> None:
        if not self.breaker_changes or self.breaker_changes[-1]["state"] != state:
            self.breaker_changes.append({"at_s": round(now - self.started, 2), "state": state})

    def rate(self, now: float, sent: int) -> float:
        self.samples.append((now, sent))
        while len(self.samples) > 1 and now - self.samples[0][0] > RATE_WINDOW:
            self.samples.popleft()
        t0, s0 = self.samples[0]
        return (sent - s0) / (now - t0) if now > t0 else 0.0


def set_rate(settings: Settings, provider: str, rate: int) -> None:
    """Change a provider's rate for every worker of this process, at once.

    The workers read the account from the stack's settings on every bucket
    call (:meth:`worker.runtime.Runtime.bucket`); the bucket's state is in Redis.
    """
    providers = settings.providers
    providers[provider] = providers[provider].model_copy(update={"rate": rate, "burst": rate})


def campaign_rows(count: int) -> Iterator[dict[str, str]]:
    for i in range(count):
        yield {"phone": f"+49151{i:08d}", "name": f"customer {i}"}


def run(console: Console, options: DemoOptions) -> int:
    """Start the embedded stack, play the scenario, report; the exit status."""
    _quiet_logs()
    stack_options = StackOptions(
        # Shorter than the scheduled message's lead, so the promoter hands it over.
        schedule_horizon=max(1, min(5, int(options.schedule_in / 2))),
        sims={
            # The campaign's provider is the one that pushes back.
            "panelsms": {
                "queue_full_ratio": options.queue_full_ratio,
                "rate_limit": options.provider_rate_limit,
                "latency_ms": 5,
            },
            "brand": {"latency_ms": 5},
        },
    )
    console.print("[bold]smsq demo[/bold]: starting the embedded stack ...")
    try:
        stack = EmbeddedStack(stack_options).start()
    except StackError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 1
    database = "SQLite (temporary)" if stack.embedded_database else "$SMSQ_DATABASE_URL"
    store_name = "in-process (fakeredis)" if stack.embedded_redis else "$SMSQ_REDIS_URL"
    console.print(
        f"  database {database}, Redis {store_name}, broker in-process; "
        f"simulators {', '.join(stack.simulator_urls.values())}, API {stack.api_url}"
    )
    store = redis.Redis.from_url(stack.redis_url)
    try:
        with Producer.from_settings(stack.settings) as producer:
            return _scenario(console, options, stack, producer, store)
    finally:
        store.close()
        stack.stop()


def _scenario(
    console: Console,
    options: DemoOptions,
    stack: EmbeddedStack,
    producer: Producer,
    store: redis.Redis,
) -> int:
    progress = Progress()
    started_at = progress.started_at
    set_rate(stack.settings, CAMPAIGN_PROVIDER, options.rate)
    if options.failover:
        progress.outage = ProviderOutage(
            stack.sim_servers[OUTAGE_ADAPTER], CAMPAIGN_PROVIDER, options.outage
        )
    progress.rate_changes.append({"at_s": 0.0, "rate": options.rate})

    scheduled = producer.send(
        "+4917012345678",
        "Your table for two is booked for 8 pm tonight.",
        provider=OTP_PROVIDER,
        send_at=started_at + dt.timedelta(seconds=options.schedule_in),
    )
    # Ingestion runs beside the sending: the first chunk is sent while the
    # rest is still being written. No provider named: the campaign takes the
    # route its kind matches (bulk), and the workers choose the account.
    receipts: list[Any] = []
    name = f"spring sale (smsq demo {started_at:%Y-%m-%d %H:%M:%S.%f})"
    ingest = threading.Thread(
        target=lambda: receipts.append(
            producer.submit_campaign(name, campaign_rows(options.recipients), CAMPAIGN_TEXT)
        ),
        name="smsq-demo-ingest",
        daemon=True,
    )
    ingest.start()
    campaign_id = _wait_for_campaign_id(producer, ingest, name)
    expected = options.recipients * (
        options.raise_at / options.rate + (1 - options.raise_at) / options.raised_rate
    )
    otp_every = max(0.3, expected / (options.otps + 1))
    next_otp = time.monotonic() + otp_every
    rng = random.Random()
    done_since: float | None = None
    awaiting = (0, 0.0)  # messages still awaiting a report, and since when
    completed = False
    interactive = console.is_terminal
    last_line = 0.0
    last_account_state = ""

    outage = progress.outage
    breaker = ProviderHealth(store, CAMPAIGN_PROVIDER, breaker_settings(stack.settings))
    with Live(console=console, auto_refresh=False, transient=False) as live:
        while True:
            now = time.monotonic()
            if progress.otps_submitted < options.otps and now >= next_otp:
                code = f"{rng.randrange(10**6):06d}"
                producer.send(
                    f"+49170{rng.randrange(10**7):07d}",
                    f"Your code is {code}",
                    kind=MessageKind.OTP,
                    provider=OTP_PROVIDER,
                    stop_list=False,
                )
                progress.otps_submitted += 1
                next_otp = now + otp_every
            with producer.sessions() as session:
                snap = snapshot(session, campaign_id, since=started_at)
                latencies = otp_latencies(session, since=started_at)
                timing = _scheduled_line(session.get(Message, scheduled.id))
                carriers = _carrier_line(session, campaign_id, snap)
            if (
                outage is not None
                and not outage.begun
                and snap.sent >= options.outage_at * options.recipients
            ):
                outage.start()
            breaker_state = breaker.state().state
            progress.breaker(time.monotonic(), breaker_state)
            route = _route_line(progress, carriers, breaker_state)
            rate = progress.rate(now, snap.sent)
            if (
                len(progress.rate_changes) == 1
                and snap.sent >= options.raise_at * options.recipients
            ):
                set_rate(stack.settings, CAMPAIGN_PROVIDER, options.raised_rate)
                progress.rate_changes.append(
                    {"at_s": round(now - progress.started, 2), "rate": options.raised_rate}
                )
            states = {a: _bucket_state(stack.settings, store, a) for a in BUCKET_ACCOUNTS}
            progress.bucket_samples.append(
                Sample(time.time(), states[CAMPAIGN_PROVIDER].rate, snap.by_status.get("queued", 0))
            )
            buckets = {a: _bucket_line(stack.settings, a, state) for a, state in states.items()}
            view = _live_view(snap, rate, latencies, buckets, timing, route, progress, options)
            if interactive:
                live.update(view, refresh=True)
            else:
                # The panel account's changes as they happen (outage, breaker),
                # and progress every 5 s.
                account_state = route.split(" -- ")[0]
                if account_state != last_account_state:
                    last_account_state = account_state
                    elapsed = time.monotonic() - progress.started
                    console.print(f"{elapsed:5.1f} s  {account_state}", markup=False)
                if now - last_line >= 5.0:
                    last_line = now
                    console.print(_progress_line(snap, rate, route, progress), markup=False)
            everything_in = not ingest.is_alive() and progress.otps_submitted >= options.otps
            if everything_in and snap.pending == 0:
                done_since = done_since or now
                owed = snap.by_status.get("sent", 0)
                if owed != awaiting[0]:
                    awaiting = (owed, now)
                if (
                    owed == 0
                    or now - awaiting[1] >= REPORT_STALL
                    or now - done_since >= REPORT_WAIT_MAX
                ):
                    completed = True
                    break
            if now - progress.started > options.timeout:
                break
            time.sleep(REFRESH)

    finished_at = utcnow()
    if outage is not None:
        outage.stop()  # ended early if the campaign finished first
    route_accounts = stack.settings.routes[CAMPAIGN_ROUTE].accounts
    with producer.sessions() as session:
        report = summary(
            session,
            campaign_id=campaign_id,
            scheduled_id=scheduled.id,
            otp_count=progress.otps_submitted,
            started=started_at,
            finished=finished_at,
            rate_changes=progress.rate_changes,
            simulators={adapter: sim.stats() for adapter, sim in stack.sims.items()},
            completed=completed,
            route={"name": CAMPAIGN_ROUTE, "accounts": list(route_accounts)},
            outage=outage.times() if outage is not None else None,
            breaker_changes=progress.breaker_changes,
        )
    if receipts:
        report["campaign"]["rejected_at_submission"] = receipts[0].rejected
    report["bucket_use"] = _bucket_use(progress, report, stack.sims[OUTAGE_ADAPTER].stats())
    options.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    console.print(_summary_table(report))
    console.print(f"report written to {options.report}")
    ok = (
        completed
        and report["campaign"]["sent"] == options.recipients
        and report["duplicates_at_providers"] == 0
    )
    if not ok:
        console.print("[red]the demo did not finish: see the report[/red]")
    return 0 if ok else 1


def _bucket_use(
    progress: Progress, report: dict[str, Any], panel_stats: dict[str, Any]
) -> dict[str, Any]:
    """The campaign account's bucket: its share used in each 5-s window while
    the campaign had a second's worth queued, the outage (from its start
    until the campaign was back on panel) left out."""
    skip: list[tuple[float, float]] = []
    outage = report["routing"]["outage"]
    if outage is not None:
        zero = progress.started_at.timestamp()
        back = outage["first_back_s"]
        skip.append((zero + outage["started_s"], zero + back + 1 if back else float("inf")))
    use = bucket_use(used_per_second(panel_stats), progress.bucket_samples, skip=skip)
    weakest_at = use.pop("weakest_at")
    if weakest_at is not None:  # seconds from the demo's start, as the report's other times
        weakest_at = round(weakest_at - progress.started_at.timestamp(), 1)
    return {"account": CAMPAIGN_PROVIDER, "window_s": WINDOW, **use, "weakest_at_s": weakest_at}


def _wait_for_campaign_id(producer: Producer, ingest: threading.Thread, name: str) -> str:
    """The campaign's id as soon as its row exists (ingestion goes on)."""
    while True:
        with producer.sessions() as session:
            found = session.scalar(select(Campaign.id).where(Campaign.name == name))
        if found is not None:
            return found
        if not ingest.is_alive():
            raise RuntimeError("the demo campaign was not created")
        time.sleep(0.05)


BUCKET_ACCOUNTS = (CAMPAIGN_PROVIDER, FALLBACK_PROVIDER)


def _bucket_state(settings: Settings, store: redis.Redis, provider: str) -> BucketState:
    account = settings.providers[provider]
    return TokenBucket(store, provider, rate=account.rate, burst=account.burst).state()


def _bucket_line(settings: Settings, provider: str, state: BucketState) -> str:
    account = settings.providers[provider]
    return f"{state.rate:.0f}/s of {account.rate:g}/s (factor {state.factor:.2f})"


def _carrier_line(session: Session, campaign_id: str, snap: Snapshot) -> str:
    """Which accounts carried the campaign's last seconds of sends (most first)."""
    recent = campaign_by_account(
        session, campaign_id, sent_from=utcnow() - dt.timedelta(seconds=CARRIER_WINDOW)
    )
    if not recent:
        if snap.sent and snap.sent >= sum(snap.by_status.values()):
            return "campaign all sent"
        return f"no campaign message sent in the last {CARRIER_WINDOW:.0f} s"
    ranked = sorted(recent.items(), key=lambda item: item[1], reverse=True)
    return "campaign on " + " and ".join(account for account, _ in ranked)


def _route_line(progress: Progress, carriers: str, breaker: str) -> str:
    """E.g. ``panel: refusing connections (demo fault) since 12.3 s, breaker open --
    campaign on brand``: the live view's line for the campaign's route."""
    outage = progress.outage
    times = outage.times() if outage is not None else None
    if times is None:
        state = "up"
    else:
        began = (times.started - progress.started_at).total_seconds()
        if outage is not None and outage.on:
            state = f"refusing connections (demo fault) since {began:.1f} s"
        elif times.ended is not None:
            ended = (times.ended - progress.started_at).total_seconds()
            state = f"back since {ended:.1f} s (refused connections {began:.1f} to {ended:.1f} s)"
        else:
            state = f"did not come back: {times.error}"
    return f"{CAMPAIGN_PROVIDER}: {state}, breaker {breaker} -- {carriers}"


def _progress_line(snap: Snapshot, rate: float, route: str, progress: Progress) -> str:
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(snap.by_status.items()))
    return (
        f"{time.monotonic() - progress.started:5.1f} s  sent {snap.sent}  {rate:5.0f}/s  "
        f"[{statuses}]  retries {snap.retries or '-'}  {route}"
    )


def _live_view(
    snap: Snapshot,
    rate: float,
    latencies: list[float],
    buckets: dict[str, str],
    timing: str,
    route: str,
    progress: Progress,
    options: DemoOptions,
) -> Columns:
    statuses = Table("status", "messages", title="campaign")
    for status, count in sorted(snap.by_status.items()):
        statuses.add_row(status, str(count))
    facts = Table("", "", show_header=False, title="now")
    facts.add_row("elapsed", f"{time.monotonic() - progress.started:.1f} s")
    facts.add_row("sent", f"{snap.sent} of {options.recipients}")
    facts.add_row("current rate", f"{rate:.0f}/s")
    facts.add_row(f"route {CAMPAIGN_ROUTE}", route)
    for account, bucket in buckets.items():
        facts.add_row(f"{account} bucket", bucket)
    retries = ", ".join(f"code {c}: {n}" for c, n in sorted(snap.retries.items())) or "-"
    facts.add_row("retries by code", retries)
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    facts.add_row(
        "OTP latency",
        f"{len(latencies)} of {progress.otps_submitted} sent"
        + (f", p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms" if p50 and p99 else ""),
    )
    facts.add_row("scheduled message", timing)
    return Columns([statuses, facts])


def _outage_cell(outage: dict[str, Any]) -> str:
    if outage["error"]:
        began = outage["started_s"]
        return f"refused connections from {began} s; did not come back: {outage['error']}"
    cell = (
        f"refused connections from {outage['started_s']} s to {outage['ended_s']} s "
        f"({outage['length_s']} s; its open connections answered a last request "
        f"and were closed by {outage['down_s']} s)"
    )
    return cell + (" (cut short: the campaign was done)" if outage["cut_short"] else "")


def _breaker_cell(outage: dict[str, Any]) -> str:
    if outage["breaker_open_s"] is None:
        return "never seen open"
    closed = outage["breaker_closed_s"]
    return f"open at {outage['breaker_open_s']} s, " + (
        f"closed again at {closed} s (its probe)" if closed is not None else "still open at the end"
    )


def _failover_cell(outage: dict[str, Any]) -> str:
    account, fallback = outage["account"], outage["fallback"]
    over = (
        f"on {fallback} {outage['failover_s']} s after the fault began"
        if outage["failover_s"] is not None
        else f"never on {fallback}"
    )
    back = (
        f"back on {account} {outage['back_s']} s after it ended"
        if outage["back_s"] is not None
        else f"not back on {account} before the end"
    )
    return f"{over}; {back}"


def _bucket_use_cell(report: dict[str, Any]) -> str:
    use = report["bucket_use"]
    if not use["windows"]:
        return "- (never a second of its rate waiting)"
    return (
        f"weakest {use['window_s']} s {use['weakest'] * 100:.1f} % of its rate "
        f"(from {use['weakest_at_s']} s), "
        f"median {use['median'] * 100:.1f} % ({use['windows']} windows with work waiting)"
    )


def _scheduled_line(message: Message | None) -> str:
    if message is None or message.send_at is None:
        return "-"
    if message.sent_at is not None:
        late = (message.sent_at - message.send_at).total_seconds()
        return f"{message.status}, sent {late * 1000:.0f} ms after its time"
    due = (message.send_at - utcnow()).total_seconds()
    return f"{message.status}, due in {max(due, 0):.1f} s"


def _summary_table(report: dict[str, Any]) -> Table:
    c, otp, sch = report["campaign"], report["otp"], report["scheduled"]
    table = Table("", "", show_header=False, title="smsq demo: summary")
    table.add_row("campaign recipients", str(c["recipients"]))
    table.add_row("sent", str(c["sent"]))
    owed = c["by_status"].get("sent", 0)
    table.add_row(
        "delivered",
        f"{c['delivered']}" + (f" ({owed} reports still on their way at the end)" if owed else ""),
    )
    table.add_row("failed", str(c["failed"]))
    retries = report["retries_by_code"]
    table.add_row(
        "retried, by code", ", ".join(f"{k}: {v}" for k, v in sorted(retries.items())) or "-"
    )
    table.add_row(
        "throughput",
        f"{c['throughput_per_s']}/s over {c['sending_s']} s "
        f"(rate {' -> '.join(str(r['rate']) for r in report['rate_changes'])}/s)",
    )
    table.add_row(
        "OTP latency",
        f"p50 {otp['latency_ms_p50']} ms, p99 {otp['latency_ms_p99']} ms "
        f"({otp['sent']} of {otp['submitted']} sent)",
    )
    table.add_row("scheduled message", f"sent {sch['send_time_error_ms']} ms after its time")
    routing = report["routing"]
    table.add_row(
        "campaign by account",
        f"route {routing['route']} ({' -> '.join(routing['accounts'])}): "
        + ", ".join(f"{a} {n}" for a, n in routing["campaign_by_account"].items()),
    )
    outage = routing["outage"]
    if outage is not None:
        table.add_row(f"{outage['account']} outage", _outage_cell(outage))
        table.add_row(f"{outage['account']} breaker", _breaker_cell(outage))
        table.add_row("failover", _failover_cell(outage))
        during = otp["during_outage"]
        table.add_row(
            "OTPs during the outage",
            f"{during['sent']} sent"
            + (f", slowest {during['latency_ms_max']} ms" if during["sent"] else ""),
        )
    table.add_row(f"{report['bucket_use']['account']} bucket used", _bucket_use_cell(report))
    table.add_row("duplicates at the providers", str(report["duplicates_at_providers"]))
    table.add_row(
        "panelsms refused, by code", json.dumps(report["panelsms_simulator"]["rejected_by_code"])
    )
    table.add_row("demo took", f"{report['duration_s']} s")
    return table


def _quiet_logs() -> None:
    """Warnings only: the live view is the output. (Logs never carry texts.)"""
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("smsq", "celery", "kombu", "uvicorn", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # kombu warns that memory:// names no host.
    logging.getLogger("kombu.connection").setLevel(logging.ERROR)
