"""``smsq demo``: the main job of smsq, on the embedded default, in one command.

In this process (:mod:`smsq.embedded`: simulator, API, workers, promoter;
SQLite and an in-process broker and Redis unless the environment points at
real ones) it:

- submits a campaign (10,000 recipients) through the panelsms adapter, its
  bucket at 100/s, raised to 400/s once a fifth of it is sent, while the
  simulator answers some requests with code 6 (queue full) and code 7
  (throttled, above its own rate limit): the retries and the adaptive
  throttle at work;
- sends a handful of OTPs through the brand adapter while the campaign runs,
  on their own queue and worker, and measures how long each took;
- schedules one message a few seconds ahead and measures how late it left;
- shows live progress, then a summary, also written to ``demo-report.json``.

It exits 0 when every message was handed to the provider, 1 otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


@dataclass(frozen=True)
class DemoOptions:
    recipients: int = 10_000
    otps: int = 5
    schedule_in: float = 10.0
    """Seconds ahead of the scheduled message."""
    rate: int = 100
    """The campaign provider's bucket at the start, messages per second."""
    raised_rate: int = 400
    raise_at: float = 0.2
    """Share of the campaign sent when the rate is raised."""
    queue_full_ratio: float = 0.02
    """Share of requests the simulator answers with code 6."""
    provider_rate_limit: int = 380
    """The simulator answers code 7 above this many messages per second."""
    report: Path = Path("demo-report.json")
    timeout: float = 180.0
    """Give up (exit 1) after this many seconds."""


def run_demo(console: Console | None = None, options: DemoOptions | None = None) -> int:
    """Run the demo; the exit status. (The stack is imported here: ``smsq --help`` stays fast.)"""
    from smsq.demo_scenario import run

    return run(console or Console(), options or DemoOptions())


def command(
    recipients: Annotated[int, typer.Option(min=1, help="campaign size")] = 10_000,
    otps: Annotated[int, typer.Option(min=0, help="OTPs sent while the campaign runs")] = 5,
    schedule_in: Annotated[
        float, typer.Option(min=2.0, help="seconds ahead of the scheduled message")
    ] = 10.0,
    rate: Annotated[int, typer.Option(min=1, help="campaign bucket at the start, /s")] = 100,
    raised_rate: Annotated[int, typer.Option(min=1, help="campaign bucket once raised, /s")] = 400,
    report: Annotated[Path, typer.Option(help="where the JSON report goes")] = Path(
        "demo-report.json"
    ),
) -> None:
    """Run the demo on the embedded default: no database or Redis needed.

    A 10,000-recipient campaign, OTPs while it runs and a scheduled message,
    through the provider simulator, with live progress; the summary is also
    written to demo-report.json. Uses SMSQ_DATABASE_URL / SMSQ_REDIS_URL when
    they are set (and Redis answers).

    Example: [bold]smsq demo --recipients 2000 --otps 3[/bold]
    """
    options = DemoOptions(
        recipients=recipients,
        otps=otps,
        schedule_in=schedule_in,
        rate=rate,
        raised_rate=raised_rate,
        report=report,
    )
    raise typer.Exit(run_demo(Console(), options))


def main() -> None:  # pragma: no cover - ``python -m smsq.demo``
    typer.run(command)


if __name__ == "__main__":  # pragma: no cover
    # Through the package's module, so smsq.demo is imported once.
    from smsq.demo import main as package_main

    package_main()
