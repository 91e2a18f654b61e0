"""``smsq send`` and ``smsq message``: one OTP or transactional SMS."""

from __future__ import annotations

import enum
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from smsq.cli.common import (
    JsonFlag,
    console,
    emit_json,
    err,
    guarded,
    id_column,
    not_found,
    open_producer,
    read_text_argument,
    when,
)

message_app = typer.Typer(help="Look at one message.", no_args_is_help=True)


class Kind(enum.StrEnum):
    OTP = "otp"
    TRANSACTIONAL = "transactional"


def send(
    to: Annotated[str, typer.Option("--to", help="the number, with its country code")],
    text: Annotated[str, typer.Option("--text", help="the message; '-' reads it from stdin")],
    kind: Annotated[
        Kind, typer.Option("--kind", help="otp goes on its own queue, never behind campaigns")
    ] = Kind.TRANSACTIONAL,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="send later: ISO 8601 with a zone, or 'YYYY-MM-DD HH:MM' in SMSQ_TIMEZONE",
        ),
    ] = None,
    provider: Annotated[
        str | None,
        typer.Option(
            "--provider",
            help="provider account or route (default: routes, else the default account)",
        ),
    ] = None,
    sender: Annotated[str | None, typer.Option("--sender", help="sender id shown")] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help="repeat with the same key: sent once"),
    ] = None,
    callback_url: Annotated[
        str | None, typer.Option("--callback-url", help="status webhooks go there")
    ] = None,
    skip_stop_list: Annotated[
        bool,
        typer.Option("--skip-stop-list", help="send even to a stop-listed number (an OTP)"),
    ] = False,
    flash: Annotated[bool, typer.Option("--flash", help="a flash SMS (one part only)")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Send one SMS: prints its id, status, encoding and parts.

    Example: [bold]smsq send --to "+49 170 1234567" --text "Your code is 123456" --kind otp[/bold]
    """
    with guarded(as_json), open_producer() as producer:
        receipt = producer.send(
            to,
            read_text_argument(text),
            kind=kind.value,
            send_at=at,
            provider=provider,
            sender=sender,
            idempotency_key=idempotency_key,
            callback_url=callback_url,
            stop_list=not skip_stop_list,
            flash=flash,
        )
    if as_json:
        emit_json(receipt)
        return
    table = Table(id_column("id"), "status", "encoding", "parts", title="message accepted")
    table.add_row(receipt.id, receipt.status, receipt.encoding, str(receipt.segments))
    console.print(table)
    if receipt.status == "suppressed":
        err.print("[yellow]note:[/yellow] the number is on the stop list: it will not be sent")


@message_app.command("show")
def show(
    message_id: Annotated[str, typer.Argument(help="the id smsq send printed")],
    as_json: JsonFlag = False,
) -> None:
    """Show a message's status and its history (never its text).

    Example: [bold]smsq message show 0190f5c2-7d2a-7c4e-9b1a-2f3c4d5e6f70 --json[/bold]
    """
    from producer.campaign_views import message_view

    with guarded(as_json), open_producer() as producer, producer.sessions() as session:
        view = message_view(session, message_id)
        if view is None:
            raise not_found("message", message_id)
    if as_json:
        emit_json(view)
        return
    table = Table("field", "value", title=f"message {view.id}")
    for name, value in (
        ("to", view.to),
        ("kind", view.kind),
        ("campaign", view.campaign_id or "-"),
        ("status", view.status),
        ("provider", view.provider),
        ("route", view.route or "-"),
        ("provider id", view.provider_message_id or "-"),
        ("error", f"{view.error_code} {view.error_detail or ''}" if view.error_code else "-"),
        ("attempts", str(view.attempts)),
        ("encoding / parts", f"{view.encoding} / {view.segments}"),
        ("send at", when(view.send_at)),
        ("expires", when(view.expires_at)),
        ("created", when(view.created_at)),
        ("sent", when(view.sent_at)),
        ("finished", when(view.finished_at)),
    ):
        table.add_row(name, escape(value))
    console.print(table)
    events = Table("time", "status", "source", "applied", "code", "detail", title="history")
    for event in view.events:
        events.add_row(
            when(event.created_at),
            event.status,
            event.source,
            "yes" if event.applied else "no (kept only)",
            "-" if event.provider_code is None else str(event.provider_code),
            escape(event.detail or ""),
        )
    console.print(events)
