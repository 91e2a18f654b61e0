"""The ``smsq`` command (Typer + rich).

Client commands (``send``, ``message``, ``campaign``, ``stoplist``, ``keys``)
run on an operator's machine with the fleet's settings and talk to the
database and broker through the Python API (:class:`producer.api.Producer`),
not through the HTTP API. The service commands (``db``, ``config``,
``simulator``, ``api``, ``worker``, ``beat``, ``demo``) are in
:mod:`smsq.cli.services`. Exit codes and ``--json`` rules: :mod:`smsq.cli.common`
and ``docs/cli.md``.
"""

from __future__ import annotations

import typer

from smsq.cli import services
from smsq.cli.campaigns import campaign_app
from smsq.cli.common import EXIT_CODES_HELP
from smsq.cli.fleet import fleet_app
from smsq.cli.keys import keys_app
from smsq.cli.messages import message_app, send
from smsq.cli.stoplist import stoplist_app

__all__ = ["app", "main"]

app = typer.Typer(
    name="smsq",
    help=(
        "smsq: an asynchronous job-queue bulk SMS sender.\n\n"
        "Every command takes --help (with an example) and --json (one JSON document "
        f"on stdout, for scripts).\n\n{EXIT_CODES_HELP}"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
app.command("send")(send)
app.add_typer(message_app, name="message")
app.add_typer(campaign_app, name="campaign")
app.add_typer(stoplist_app, name="stoplist")
app.add_typer(keys_app, name="keys")
app.add_typer(fleet_app, name="fleet")
services.register(app)


def main() -> None:  # pragma: no cover - console script entry
    app()
