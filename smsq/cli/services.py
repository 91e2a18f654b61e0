"""Running smsq: the schema, the settings, and the long-running processes.

``smsq db``, ``config``, ``simulator``, ``api``, ``worker``, ``beat``, ``demo``:
what an operator starts, as opposed to the client commands (send, campaign,
stoplist, keys) that talk to a running fleet.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Annotated

import typer
from rich.table import Table

from models.retention import BATCH_SIZE, Pruned
from smsq.cli.common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    Failure,
    JsonFlag,
    console,
    emit_json,
    err,
    fail,
    guarded,
    now,
    parse_duration,
    when,
)
from smsq.core.settings import ProvidersFileError, get_settings

db_app = typer.Typer(
    help="The database: schema (Alembic migrations) and retention (prune).", no_args_is_help=True
)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
) -> None:
    """Migrate the database at SMSQ_DATABASE_URL to REVISION (default: newest).

    Example: [bold]SMSQ_DATABASE_URL=postgresql://postgres@127.0.0.1/smsq smsq db upgrade[/bold]
    """
    from models.migrate import upgrade

    upgrade(get_settings().database_url, revision)
    console.print(f"database at revision {revision}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="target revision, e.g. base")],
) -> None:
    """Migrate the database at SMSQ_DATABASE_URL down to REVISION.

    Example: [bold]smsq db downgrade base[/bold]
    """
    from models.migrate import downgrade

    downgrade(get_settings().database_url, revision)
    console.print(f"database at revision {revision}")


@db_app.command("prune")
def db_prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="keep what ended more recently: 90d, 12h")
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only count")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=100_000, help="rows per transaction")
    ] = BATCH_SIZE,
    as_json: JsonFlag = False,
) -> None:
    """Delete messages finished longer ago than --older-than, with their events,
    webhook outbox rows and campaigns, in short batches while the fleet sends.

    A campaign goes whole (its messages and its row) once it ended before the
    cutoff; a running or paused campaign's messages are kept however old.
    Messages in unknown are kept. Idempotency records past their TTL go too.
    Counts first (--dry-run stops there), then asks (or --yes).

    Example: [bold]smsq db prune --older-than 90d --dry-run[/bold]
    """
    from models.db import make_engine, make_sessionmaker
    from models.retention import prune

    with guarded(as_json):
        age = parse_duration(older_than)
        if age is None or age <= dt.timedelta(0):
            raise Failure(
                "use a positive duration: 90d, 12h, 30m",
                code="invalid_field",
                exit_code=EXIT_USAGE,
                field="older_than",
            )
        if as_json and not (dry_run or yes):
            raise Failure("--json needs --dry-run or --yes (no prompt)", exit_code=EXIT_USAGE)
        settings = get_settings()
        engine = make_engine(settings.database_url)
        try:
            sessions = make_sessionmaker(engine)
            at = now()

            def run(dry: bool) -> Pruned:
                return prune(
                    sessions,
                    older_than=age,
                    idempotency_ttl=settings.idempotency_ttl,
                    now=at,
                    batch_size=batch_size,
                    dry_run=dry,
                )

            found = run(dry=True)
            if not as_json:
                console.print(_pruned_table(found, "would delete"))
            if dry_run:
                if as_json:
                    emit_json({"dry_run": True, **_pruned_fields(found)})
                return
            if not yes and not typer.confirm("Delete them?"):
                console.print("nothing deleted")
                raise typer.Exit(EXIT_FAILURE)
            done = run(dry=False)
        finally:
            engine.dispose()
        if as_json:
            emit_json({"dry_run": False, **_pruned_fields(done)})
            return
        console.print(_pruned_table(done, "deleted"))


def _pruned_fields(pruned: Pruned) -> dict[str, object]:
    return dataclasses.asdict(pruned)


def _pruned_table(pruned: Pruned, title: str) -> Table:
    table = Table("rows", title, title=f"ended before {when(pruned.cutoff)}")
    for label, count in (
        ("messages", pruned.messages),
        ("message events", pruned.events),
        ("webhook outbox rows", pruned.webhooks),
        ("campaigns", pruned.campaigns),
        ("idempotency records past their TTL", pruned.idempotency_records),
    ):
        table.add_row(label, f"{count:,}")
    return table


def show_config(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Show the settings in effect, credentials masked; check the providers file.

    Example: [bold]SMSQ_PROVIDERS_FILE=providers.toml smsq config --json[/bold]
    """
    settings = get_settings()
    try:
        providers = {
            name: account.model_dump(mode="json") for name, account in settings.providers.items()
        }
        default = settings.default_provider_name
    except ProvidersFileError as exc:
        raise fail(str(exc)) from None
    values = settings.model_dump(mode="json")
    values["broker_url"] = settings.effective_broker_url
    for key in ("database_url", "redis_url", "broker_url"):
        values[key] = masked_url(values[key])
    values["default_provider"] = default
    if as_json:
        print(json.dumps({"settings": values, "providers": providers}, indent=2))
        return
    table = Table("setting", "value", title="smsq settings")
    for key, value in values.items():
        table.add_row(f"SMSQ_{key.upper()}", str(value))
    console.print(table)
    accounts = Table("account", "adapter", "url", "rate/s", "burst", title="provider accounts")
    for name, acc in providers.items():
        accounts.add_row(name, acc["adapter"], acc["url"], str(acc["rate"]), str(acc["burst"]))
    console.print(accounts)


def simulator(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8025,
    latency_ms: Annotated[float, typer.Option(help="added to every answer")] = 0.0,
    jitter_ms: Annotated[float, typer.Option(help="latency varies by up to +/- this")] = 0.0,
    rate_limit: Annotated[
        int | None, typer.Option(help="messages per second above which it answers 7")
    ] = None,
    queue_full_ratio: Annotated[float, typer.Option(help="share answered 6 (queue full)")] = 0.0,
    error_5xx_ratio: Annotated[float, typer.Option(help="share answered HTTP 500")] = 0.0,
    hang_ratio: Annotated[float, typer.Option(help="share never answered")] = 0.0,
    dlr_delay: Annotated[float, typer.Option(help="seconds until a delivery report")] = 1.0,
    delivered_ratio: Annotated[float, typer.Option(help="share of reports 'delivered'")] = 1.0,
    seed: Annotated[int | None, typer.Option(help="seed for reproducible faults")] = None,
) -> None:
    """Serve both provider APIs (panelsms and brand) with fault injection.

    It accepts the accounts of SMSQ_PROVIDERS_FILE (or the built-in demo
    accounts) and sends brand delivery reports to SMSQ_PUBLIC_URL/dlr/brand.
    Faults can also be changed while it runs: POST JSON to /_config.
    Stats: GET /_stats.

    Example: [bold]smsq simulator --port 8025 --latency-ms 20 --queue-full-ratio 0.1[/bold]
    """
    from providers.simulator import Simulator, serve
    from smsq.simulator_setup import simulator_config

    try:
        config = simulator_config(
            get_settings(),
            latency_ms=latency_ms,
            jitter_ms=jitter_ms,
            rate_limit=rate_limit,
            queue_full_ratio=queue_full_ratio,
            error_5xx_ratio=error_5xx_ratio,
            hang_ratio=hang_ratio,
            dlr_delay=dlr_delay,
            delivered_ratio=delivered_ratio,
            seed=seed,
        )
    except (ProvidersFileError, ValueError) as exc:
        raise fail(str(exc)) from None
    err.print(f"simulator on http://{host}:{port} (stats at /_stats, faults at /_config)")
    serve(Simulator(config), host=host, port=port)


def api(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Serve the HTTP API: delivery-report receivers (/dlr/brand, /dlr/panelsms), /healthz.

    Providers must reach it at SMSQ_PUBLIC_URL.

    Example: [bold]smsq api --host 0.0.0.0 --port 8000[/bold]
    """
    import uvicorn

    _prometheus_multiprocess_dir()  # uvicorn --workers N: /metrics sums the processes
    uvicorn.run(
        "smsq.api_app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # smsq's logging (smsq.core.logs: SMSQ_LOG_LEVEL, SMSQ_LOG_JSON) for uvicorn's
        # loggers too, access log included, instead of uvicorn's own setup.
        log_config=None,
    )


def worker(
    queues: Annotated[
        str, typer.Option(help="comma-separated: otp, transactional, campaign, webhooks")
    ] = "otp,transactional,campaign,webhooks",
    concurrency: Annotated[int, typer.Option(help="processes (prefork)")] = 2,
    prefetch: Annotated[
        int, typer.Option(min=1, help="tasks each process reserves ahead (1: no OTP waits)")
    ] = 1,
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "info",
) -> None:
    """Run a Celery worker with smsq's defaults (prefork, acks late, prefetch 1).

    Same as: celery -A worker.app worker -Q QUEUES -c N. Run latency queues and
    the campaign queue in separate workers so an OTP never waits behind a campaign.

    Example: [bold]smsq worker --queues otp,transactional --concurrency 4[/bold]
    """
    # First thing: prometheus_client picks its multiprocess mode when imported
    # (by the worker's modules), and the pool's children inherit the directory.
    _prometheus_multiprocess_dir()
    from smsq.core.names import QUEUES
    from worker.app import make_app

    celery_app = make_app(get_settings())

    wanted = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = sorted(set(wanted) - set(QUEUES))
    if not wanted or unknown:
        err.print(f"error: --queues: unknown queue(s) {unknown} (known: {', '.join(QUEUES)})")
        raise typer.Exit(2)
    celery_app.worker_main(
        [
            "worker",
            "-Q",
            ",".join(wanted),
            "-c",
            str(concurrency),
            "-P",
            "prefork",
            "--prefetch-multiplier",
            str(prefetch),
            "-l",
            loglevel,
            "--without-gossip",
            "--without-mingle",
        ]
    )


def beat(
    schedule: Annotated[str, typer.Option(help="file where beat keeps its state")] = (
        "celerybeat-schedule"
    ),
) -> None:
    """Run Celery beat: the promoter of scheduled sends and the sweeper. Run exactly one.

    Example: [bold]smsq beat[/bold]
    """
    from worker.app import make_app

    make_app(get_settings()).start(["beat", "-s", schedule, "-l", "info"])


def masked_url(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def register(app: typer.Typer) -> None:
    """Add these commands to the ``smsq`` app."""
    app.add_typer(db_app, name="db")
    app.command("config")(show_config)
    app.command("simulator")(simulator)
    app.command("api")(api)
    app.command("worker")(worker)
    app.command("beat")(beat)
    from smsq.demo import command as demo_command  # light: the stack loads when it runs

    app.command("demo")(demo_command)


def _prometheus_multiprocess_dir() -> None:
    """Give prometheus_client a folder shared by this process's children.

    It must be set before prometheus_client is imported (it picks multiprocess
    mode then); an operator's own PROMETHEUS_MULTIPROC_DIR is kept.
    """
    import os
    import tempfile

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="smsq-metrics-")
