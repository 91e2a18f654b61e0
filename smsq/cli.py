"""The ``smsq`` command (Typer + rich).

Exit codes: 0 ok, 1 failure, 2 bad usage (Typer's own for usage errors).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from smsq.settings import ProvidersFileError, get_settings

app = typer.Typer(
    name="smsq",
    help="smsq: an asynchronous job-queue bulk SMS sender.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")

console = Console()
err = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(1)


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


@app.command("config")
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


def masked_url(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def main() -> None:  # pragma: no cover - console script entry
    app()
