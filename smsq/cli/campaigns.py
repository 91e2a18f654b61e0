"""``smsq campaign``: submit a CSV, watch it, pause/resume/cancel it, get its report."""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Annotated

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from models.status import CampaignStatus
from producer.api import Producer
from producer.campaign_control import ControlResult
from producer.campaign_views import (
    REPORT_COLUMNS,
    CampaignSummary,
    campaign_summary,
    list_campaigns,
    report_rows,
)
from producer.csv_rows import BadRow, iter_file_chunks, read_csv_rows
from producer.errors import InvalidField
from producer.receipts import CampaignReceipt
from smsq.cli.common import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    Failure,
    JsonFlag,
    console,
    emit_json,
    err,
    guarded,
    id_column,
    jsonable,
    not_found,
    now,
    open_producer,
    short_when,
    when,
)

campaign_app = typer.Typer(help="Bulk campaigns from a CSV file.", no_args_is_help=True)

POLL_SECONDS = 1.0  # --wait reads the campaign's progress this often
ERRORS_SHOWN = 10  # rejected rows listed after a submit (all of the first 100 with --json)
DONE = frozenset({CampaignStatus.FINISHED, CampaignStatus.CANCELLED})
# The waiting loop's clock; tests replace it to move the campaign along.
sleep: Callable[[float], None] = time.sleep

Id = Annotated[str, typer.Argument(help="the campaign id that submit printed")]


# --- submit ------------------------------------------------------------------


@campaign_app.command("submit")
def submit(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="UTF-8 CSV with a header row"
        ),
    ],
    text: Annotated[str, typer.Option("--text", help="template; {column} is filled from each row")],
    name: Annotated[
        str | None, typer.Option("--name", help="campaign name (default: the file's stem)")
    ] = None,
    phone_column: Annotated[
        str, typer.Option("--phone-column", help="the column holding the numbers")
    ] = "phone",
    at: Annotated[
        str | None,
        typer.Option(
            "--at", help="start later: ISO 8601 with a zone, or 'YYYY-MM-DD HH:MM' in SMSQ_TIMEZONE"
        ),
    ] = None,
    provider: Annotated[
        str | None, typer.Option("--provider", help="provider account or route")
    ] = None,
    sender: Annotated[str | None, typer.Option("--sender", help="sender id shown")] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="then show delivery progress until it is done")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Submit a campaign: one SMS per CSV row. Exit 0 when rows were accepted, 1 if none.

    Rejected rows (bad number, duplicate, missing template field) are listed
    with their row number (the header is not counted). Ctrl-C during --wait
    stops waiting; the campaign goes on.

    Example: [bold]smsq campaign submit customers.csv --text "Hi {name}, 20% off" --wait[/bold]
    """
    with guarded(as_json), open_producer() as producer:
        with file.open("rb") as fileobj, _reading_progress(file, enabled=not as_json) as advance:
            rows = _rows(iter_file_chunks(fileobj), phone_column=phone_column, advance=advance)
            receipt = producer.submit_campaign(
                name or file.stem,
                rows,
                text,
                send_at=at,
                provider=provider,
                sender=sender,
                phone_field=phone_column,
            )
        if not as_json:
            _print_receipt(receipt)
        final: CampaignSummary | None = None
        interrupted = False
        if wait and receipt.accepted:
            try:
                final = _wait(producer, receipt.campaign_id, live=not as_json)
            except KeyboardInterrupt:
                interrupted = True
                err.print(
                    "stopped waiting; the campaign goes on: "
                    f"smsq campaign status {receipt.campaign_id}"
                )
    if as_json:
        emit_json({"receipt": receipt, "campaign": final} if wait else receipt)
    if interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if not receipt.accepted:
        err.print("[red]error:[/red] no row was accepted")
        raise typer.Exit(EXIT_FAILURE)


def _rows(
    chunks: Iterator[bytes], *, phone_column: str, advance: Callable[[int], None]
) -> Iterator[dict[str, str] | BadRow]:
    """The CSV's rows, header checked *before* the campaign is created.

    A missing phone column or an unreadable header is the user's input to fix
    (exit 2) and must not leave an empty cancelled campaign behind, so the
    first row is read here, outside the producer.
    """

    def counted() -> Iterator[bytes]:
        for chunk in chunks:
            yield chunk
            advance(len(chunk))

    rows = read_csv_rows(counted(), phone_column=phone_column)
    first = next(rows, None)
    if first is None:
        raise InvalidField("file", "no data rows after the header")
    return itertools.chain([first], rows)


class _reading_progress:
    """A progress bar of bytes read (on stderr), or nothing with ``enabled=False``."""

    def __init__(self, file: Path, *, enabled: bool) -> None:
        self.progress = Progress(
            TextColumn("reading [bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=not enabled,
            transient=True,
        )
        self.task = self.progress.add_task(file.name, total=file.stat().st_size)

    def __enter__(self) -> Callable[[int], None]:
        self.progress.start()
        return lambda n: self.progress.advance(self.task, n)

    def __exit__(self, *_: object) -> None:
        self.progress.stop()


def _print_receipt(receipt: CampaignReceipt) -> None:
    console.print(
        f"campaign [bold]{receipt.campaign_id}[/bold] {receipt.status}",
        soft_wrap=True,
        highlight=False,
    )
    table = Table("accepted", "rejected", "on stop list", title="submitted")
    table.add_row(str(receipt.accepted), str(receipt.rejected), str(receipt.suppressed))
    console.print(table)
    if receipt.errors:
        shown = receipt.errors[:ERRORS_SHOWN]
        errors = Table("row", "value", "reason", title=f"first {len(shown)} rejected rows")
        for error in shown:
            errors.add_row(str(error.row), escape(error.value), escape(error.reason))
        console.print(errors)
        if receipt.rejected > len(shown):
            console.print(
                f"... {receipt.rejected - len(shown)} more rejected "
                "(--json lists the first 100; `smsq campaign report` lists every message)"
            )


# --- waiting -----------------------------------------------------------------


def _summary(producer: Producer, campaign_id: str) -> CampaignSummary | None:
    with producer.sessions() as session:
        return campaign_summary(session, campaign_id, now=now())


def _wait(producer: Producer, campaign_id: str, *, live: bool) -> CampaignSummary | None:
    """Poll until the campaign is finished or cancelled; a live view unless JSON."""
    summary = _summary(producer, campaign_id)
    if not live:
        while summary is not None and summary.status not in DONE:
            sleep(POLL_SECONDS)
            summary = _summary(producer, campaign_id)
        return summary
    with Live(_progress_view(summary), console=console, refresh_per_second=4) as view:
        while summary is not None and summary.status not in DONE:
            sleep(POLL_SECONDS)
            summary = _summary(producer, campaign_id)
            view.update(_progress_view(summary))
    return summary


def _progress_view(summary: CampaignSummary | None) -> RenderableType:
    if summary is None:
        return "the campaign is gone"
    head = Table.grid(padding=(0, 2))
    head.add_row("campaign", f"{escape(summary.name)} ({summary.id})")
    head.add_row("status", f"[bold]{summary.status}[/bold]")
    head.add_row("to send", str(summary.to_send))
    head.add_row("rate", f"{summary.rate_per_second:.1f}/s (last minute)")
    head.add_row("finish", _eta(summary))
    counts = Table("status", "messages", title="messages by status")
    for status, count in summary.counts.items():
        counts.add_row(status, str(count))
    return Group(head, counts)


def _eta(summary: CampaignSummary) -> str:
    if summary.finished_at is not None:
        return f"finished {when(summary.finished_at)}"
    if summary.estimated_finish is None:
        return "-"
    seconds = max(0, int((summary.estimated_finish - now()).total_seconds()))
    return f"{when(summary.estimated_finish)} (in {dt.timedelta(seconds=seconds)})"


# --- status and control ------------------------------------------------------


@campaign_app.command("list")
def list_(
    limit: Annotated[int, typer.Option(min=1, max=500, help="how many, newest first")] = 20,
    status: Annotated[
        CampaignStatus | None, typer.Option(help="only campaigns in this status")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List the newest campaigns: how to find the id of the one you want.

    Example: [bold]smsq campaign list --status running[/bold]
    """
    with guarded(as_json), open_producer() as producer, producer.sessions() as session:
        found = list_campaigns(session, limit=limit, status=status.value if status else None)
    if as_json:
        emit_json(found)
        return
    table = Table(id_column("id"), "name", "status", "provider", "created", "accepted", "rejected")
    for c in found:
        table.add_row(
            c.id,
            escape(c.name),
            c.status,
            c.provider,
            short_when(c.created_at),
            str(c.accepted),
            str(c.rejected),
        )
    console.print(table)


@campaign_app.command("status")
def status(campaign_id: Id, as_json: JsonFlag = False) -> None:
    """Show a campaign's counts by status, its send rate and estimated finish.

    Example: [bold]smsq campaign status 0190f5c2-7d2a-7c4e-9b1a-2f3c4d5e6f70[/bold]
    """
    with guarded(as_json), open_producer() as producer:
        summary = _summary(producer, campaign_id)
        if summary is None:
            raise not_found("campaign", campaign_id)
    if as_json:
        emit_json(summary)
        return
    console.print(_progress_view(summary))
    times = Table.grid(padding=(0, 2))
    for label, value in (
        ("accepted / rejected rows", f"{summary.accepted} / {summary.rejected}"),
        ("provider", summary.provider),
        ("created", when(summary.created_at)),
        ("send at", when(summary.send_at)),
        ("started", when(summary.started_at)),
        ("finished", when(summary.finished_at)),
    ):
        times.add_row(label, escape(value))
    console.print(times)


def _control(
    campaign_id: str,
    as_json: bool,
    verb: str,
    target: CampaignStatus,
    action: Callable[[Producer, str], ControlResult],
) -> None:
    with guarded(as_json), open_producer() as producer:
        try:
            result = action(producer, campaign_id)
        except InvalidField as exc:
            if exc.field == "campaign":
                raise not_found("campaign", campaign_id) from None
            raise
        if result.status != target:
            raise Failure(f"cannot {verb} a campaign that is {result.status}", code="not_allowed")
    if as_json:
        emit_json(result)
        return
    done = f"{verb}d" if verb.endswith("e") else f"{verb}ed"
    if verb == "cancel":
        done = "cancelled"
    if result.changed:
        line = f"campaign {result.campaign_id} {done}"
        if verb == "cancel":
            line += f": {result.cancelled_messages} unsent messages cancelled"
        console.print(line)
    else:
        console.print(f"campaign {result.campaign_id} was already {result.status}")


@campaign_app.command("pause")
def pause(campaign_id: Id, as_json: JsonFlag = False) -> None:
    """Pause a running campaign: no new sends start; batches in flight finish.

    Example: [bold]smsq campaign pause 0190f5c2-7d2a-7c4e-9b1a-2f3c4d5e6f70[/bold]
    """
    _control(campaign_id, as_json, "pause", CampaignStatus.PAUSED, Producer.pause_campaign)


@campaign_app.command("resume")
def resume(campaign_id: Id, as_json: JsonFlag = False) -> None:
    """Resume a paused campaign: what is still queued is sent.

    Example: [bold]smsq campaign resume 0190f5c2-7d2a-7c4e-9b1a-2f3c4d5e6f70[/bold]
    """
    _control(campaign_id, as_json, "resume", CampaignStatus.RUNNING, Producer.resume_campaign)


@campaign_app.command("cancel")
def cancel(campaign_id: Id, as_json: JsonFlag = False) -> None:
    """Cancel a campaign: unsent messages become cancelled; sends in flight finish.

    Example: [bold]smsq campaign cancel 0190f5c2-7d2a-7c4e-9b1a-2f3c4d5e6f70[/bold]
    """
    _control(campaign_id, as_json, "cancel", CampaignStatus.CANCELLED, Producer.cancel_campaign)


# --- report ------------------------------------------------------------------


@campaign_app.command("report")
def report(
    campaign_id: Id,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", dir_okay=False, help="write the CSV here, not to stdout"),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """One line per recipient: number, message id, status, error, times (CSV).

    With --json and no -o, a JSON array of the same rows on stdout.

    Example: [bold]smsq campaign report 0190f5c2-7d2a-7c4e-9b1a-2f3c4d5e6f70 -o report.csv[/bold]
    """
    with guarded(as_json), open_producer() as producer, producer.sessions() as session:
        if _summary(producer, campaign_id) is None:
            raise not_found("campaign", campaign_id)
        rows = report_rows(session, campaign_id)
        if output is None:
            count = _write_json(rows, sys.stdout) if as_json else _write_csv(rows, sys.stdout)
            return
        try:
            with output.open("w", newline="", encoding="utf-8") as out:
                count = _write_csv(rows, out)
        except OSError as exc:
            raise Failure(f"cannot write {output}: {exc.strerror}") from None
    if as_json:
        emit_json({"campaign_id": campaign_id, "rows": count, "file": str(output)})
    else:
        console.print(f"{count} rows written to {output}")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def _write_csv(rows: Iterable[tuple[object, ...]], out: IO[str]) -> int:
    writer = csv.writer(out)
    writer.writerow(REPORT_COLUMNS)
    count = 0
    for row in rows:
        writer.writerow([_cell(v) for v in row])
        count += 1
    return count


def _write_json(rows: Iterable[tuple[object, ...]], out: IO[str]) -> int:
    """A JSON array written row by row: a large report is never held in memory."""
    import json

    count = 0
    out.write("[")
    for row in rows:
        out.write(",\n  " if count else "\n  ")
        out.write(json.dumps(jsonable(row), ensure_ascii=False))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count
