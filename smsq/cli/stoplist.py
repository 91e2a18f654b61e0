"""``smsq stoplist``: numbers that get no campaign SMS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn
from rich.table import Table

from producer import stoplist
from producer.csv_rows import iter_file_chunks
from smsq.cli.common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    JsonFlag,
    console,
    emit_json,
    err,
    guarded,
    open_producer,
    when,
)

stoplist_app = typer.Typer(
    help="The stop list: numbers that get no campaign SMS.", no_args_is_help=True
)

Reason = Annotated[str, typer.Option("--reason", help="why (kept with each number)")]
ERRORS_SHOWN = 10


def _print_result(result: stoplist.StoplistResult) -> None:
    console.print(
        f"added {result.added}, already listed {result.already}, not numbers {result.rejected}"
    )
    if result.errors:
        shown = result.errors[:ERRORS_SHOWN]
        table = Table("row", "value", "reason", title="not added")
        for error in shown:
            table.add_row(str(error.row), escape(error.value), escape(error.reason))
        console.print(table)


@stoplist_app.command("add")
def add(
    numbers: Annotated[list[str], typer.Argument(help="one or more numbers")],
    reason: Reason = "",
    as_json: JsonFlag = False,
) -> None:
    """Put numbers on the stop list (a number already on it keeps its first reason).

    The valid numbers are added even when another one is not a number; that
    one is reported, and the exit code is 2.

    Example: [bold]smsq stoplist add "+49 170 1234567" +4915112345678 --reason "replied STOP"[/bold]
    """
    with guarded(as_json), open_producer() as producer, producer.sessions() as session:
        result = stoplist.add_numbers(session, numbers, reason)
    if as_json:
        emit_json(result)
    else:
        _print_result(result)
    if result.rejected:
        raise typer.Exit(EXIT_USAGE)


@stoplist_app.command("remove")
def remove(
    number: Annotated[str, typer.Argument(help="the number to take off")],
    as_json: JsonFlag = False,
) -> None:
    """Take a number off the stop list (exit 0 also when it was not on it).

    Example: [bold]smsq stoplist remove "+49 170 1234567"[/bold]
    """
    with guarded(as_json), open_producer() as producer, producer.sessions() as session:
        removed = stoplist.remove_number(session, number)
    if as_json:
        emit_json({"removed": removed})
    else:
        console.print("removed" if removed else "was not on the stop list")


@stoplist_app.command("import")
def import_file(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="UTF-8 CSV with a header row"
        ),
    ],
    column: Annotated[
        str, typer.Option("--column", help="the column holding the numbers")
    ] = "phone",
    reason: Reason = "",
    as_json: JsonFlag = False,
) -> None:
    """Add every number in a CSV column. Exit 1 when the file held no valid number.

    Example: [bold]smsq stoplist import unsubscribed.csv --column mobile --reason "opt-out"[/bold]
    """
    with (
        guarded(as_json),
        open_producer() as producer,
        producer.sessions() as session,
        file.open("rb") as fileobj,
        Progress(
            TextColumn("reading [bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            console=err,
            disable=as_json,
            transient=True,
        ) as progress,
    ):
        task = progress.add_task(file.name, total=file.stat().st_size)

        def chunks() -> Iterator[bytes]:
            for chunk in iter_file_chunks(fileobj):
                yield chunk
                progress.advance(task, len(chunk))

        result = stoplist.import_csv(session, chunks(), column=column, reason=reason)
    if as_json:
        emit_json(result)
    else:
        _print_result(result)
    if not result.added and not result.already:
        err.print("[red]error:[/red] no number in the file was valid")
        raise typer.Exit(EXIT_FAILURE)


@stoplist_app.command("list")
def list_(
    limit: Annotated[int, typer.Option("--limit", min=1, max=stoplist.LIST_LIMIT_MAX)] = 100,
    after: Annotated[
        str | None, typer.Option("--after", help="start after this number (E.164): next page")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List stop-listed numbers in number order, a page at a time.

    Example: [bold]smsq stoplist list --limit 50 --after +491701234567[/bold]
    """
    with guarded(as_json), open_producer() as producer, producer.sessions() as session:
        entries = stoplist.list_numbers(session, limit=limit, after=after)
    if as_json:
        emit_json(
            [{"number": e.number, "reason": e.reason, "created_at": e.created_at} for e in entries]
        )
        return
    table = Table("number", "reason", "added", title="stop list")
    for entry in entries:
        table.add_row(entry.number, escape(entry.reason), when(entry.created_at))
    console.print(table)
    if len(entries) == limit:
        console.print(f"next page: smsq stoplist list --after '{entries[-1].number}'")
