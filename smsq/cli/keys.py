"""``smsq keys``: API keys of the HTTP API (shown once, stored hashed)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Column, Table

from models.tables import ApiKey
from producer import keys
from producer.errors import InvalidField
from producer.validation import check_callback_url
from smsq.cli.common import (
    Failure,
    JsonFlag,
    console,
    emit_json,
    err,
    guarded,
    open_producer,
    short_when,
    when,
)

keys_app = typer.Typer(help="API keys for the HTTP API.", no_args_is_help=True)


def _public(key: ApiKey) -> dict[str, object]:
    """What may be shown of a key row: never its hash, nor its webhook secret."""
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "rate_limit": key.rate_limit,
        "webhook_url": key.webhook_url,
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    }


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="who uses it, e.g. the web app's name")],
    rate_limit: Annotated[
        int | None,
        typer.Option(
            "--rate-limit", min=1, help="requests per second (default: SMSQ_API_RATE_LIMIT)"
        ),
    ] = None,
    webhook_url: Annotated[
        str | None,
        typer.Option("--webhook-url", help="default callback URL for this client's messages"),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Make an API key. It is printed once and cannot be shown again: store it now.

    Also prints the secret that signs this client's status webhooks.

    Example: [bold]smsq keys create shop --rate-limit 20 --webhook-url https://shop.example/sms[/bold]
    """
    with guarded(as_json), open_producer() as producer, producer.sessions() as session:
        try:
            # Checked like any callback URL (smsq.core.netguard); signed with the key's secret.
            check_callback_url(webhook_url, producer.settings, signed_by_key=True)
        except InvalidField as exc:
            raise InvalidField("webhook_url", exc.reason) from None
        row, key = keys.create_key(session, name, rate_limit=rate_limit, webhook_url=webhook_url)
    if as_json:
        emit_json({**_public(row), "key": key, "webhook_secret": row.webhook_secret})
        return
    err.print(
        "[yellow bold]Store this key now: it cannot be shown again.[/yellow bold] "
        "A lost key is revoked and replaced."
    )
    # Plain lines, never wrapped: the key must survive a copy from the terminal.
    for label, value in (
        ("id", row.id),
        ("name", row.name),
        ("key", key),
        ("webhook secret", row.webhook_secret),
    ):
        console.print(f"{label}: {escape(value)}", soft_wrap=True, highlight=False)


@keys_app.command("list")
def list_(as_json: JsonFlag = False) -> None:
    """List API keys (never the key itself: only its prefix).

    Example: [bold]smsq keys list --json[/bold]
    """
    with guarded(as_json), open_producer() as producer, producer.sessions() as session:
        rows = keys.list_keys(session)
    if as_json:
        emit_json([_public(row) for row in rows])
        return
    table = Table(
        Column("prefix", no_wrap=True),
        "name",
        "rate/s",
        Column("created", no_wrap=True),
        Column("revoked", no_wrap=True),
        Column("id", overflow="fold"),
        title="API keys",
    )
    for row in rows:
        table.add_row(
            row.prefix,
            escape(row.name),
            "default" if row.rate_limit is None else str(row.rate_limit),
            short_when(row.created_at),
            short_when(row.revoked_at) if row.revoked_at else "",
            row.id,
        )
    console.print(table)


@keys_app.command("revoke")
def revoke(
    key: Annotated[str, typer.Argument(help="the key's id or prefix (from keys list)")],
    as_json: JsonFlag = False,
) -> None:
    """Revoke a key: its requests are refused (403) from now on. Safe to repeat.

    Example: [bold]smsq keys revoke k3x9a2bq[/bold]
    """
    with guarded(as_json), open_producer() as producer, producer.sessions() as session:
        row = keys.revoke_key(session, key)
        if row is None:
            raise Failure(f"no API key with id or prefix {key!r}", code="not_found")
    if as_json:
        emit_json(_public(row))
    else:
        console.print(f"key {row.prefix} ({escape(row.name)}) revoked {when(row.revoked_at)}")
