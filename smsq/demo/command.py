"""``smsq demo``: the command and its flags (the scenario loads when it runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from smsq.demo.options import DemoOptions


def run_demo(console: Console | None = None, options: DemoOptions | None = None) -> int:
    """Run the demo; the exit status. (The stack is imported here: ``smsq --help`` stays fast.)"""
    from smsq.demo.scenario import run

    return run(console or Console(), options or DemoOptions())


def command(
    recipients: Annotated[int, typer.Option(min=1, help="campaign size")] = 10_000,
    otps: Annotated[int, typer.Option(min=0, help="OTPs sent while the campaign runs")] = 50,
    schedule_in: Annotated[
        float, typer.Option(min=2.0, help="seconds ahead of the scheduled message")
    ] = 10.0,
    rate: Annotated[int, typer.Option(min=1, help="campaign bucket at the start, /s")] = 100,
    raised_rate: Annotated[int, typer.Option(min=1, help="campaign bucket once raised, /s")] = 200,
    failover: Annotated[
        bool,
        typer.Option(
            help="stop the panelsms simulator's listener partway (connection refused): the "
            "campaign's route fails over to the brand account and comes back",
        ),
    ] = True,
    outage: Annotated[
        float,
        typer.Option(
            min=1.0,
            help=(
                "seconds the panelsms simulator refuses every connection "
                "(from when its open ones have closed)"
            ),
        ),
    ] = 10.0,
    report: Annotated[Path, typer.Option(help="where the JSON report goes")] = Path(
        "demo-report.json"
    ),
) -> None:
    """Run the demo on the embedded default: no database or Redis needed.

    A 10,000-recipient campaign on the route "bulk" (the panel account, the
    brand account when panel is down), OTPs while it runs and a scheduled
    message, through the provider simulators, with live progress. Partway
    through, the panelsms simulator refuses connections for --outage seconds:
    the campaign moves to brand and back. The summary is also written to
    demo-report.json. Uses SMSQ_DATABASE_URL / SMSQ_REDIS_URL when they are
    set (and Redis answers).

    Example: [bold]smsq demo --recipients 2000 --otps 3 --no-failover[/bold]
    """
    options = DemoOptions(
        recipients=recipients,
        otps=otps,
        schedule_in=schedule_in,
        rate=rate,
        raised_rate=raised_rate,
        failover=failover,
        outage=outage,
        report=report,
    )
    raise typer.Exit(run_demo(Console(), options))


def main() -> None:  # pragma: no cover - ``python -m smsq.demo``
    typer.run(command)
