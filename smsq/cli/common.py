"""What every ``smsq`` command shares: consoles, exit codes, errors, JSON.

Output rules: human output (tables, progress) is rich; ``--json`` prints one
JSON document on stdout and nothing else there (progress is suppressed,
errors go to stderr *and* as a JSON error document on stdout, shaped like the
HTTP API's: ``{"error": {"code", "message", "field"}}``).

The exit codes (also in ``smsq --help`` and ``docs/cli.md``):

- 0: done.
- 1: failure: not found, not allowed in the current state, nothing accepted,
  a service (database, broker) unreachable, a bad configuration.
- 2: bad usage: an unknown command or option, a missing argument, or a value
  the user typed that smsq refuses (a bad number, a text too long, a time in
  the past, a CSV without the phone column).
- 130: interrupted (Ctrl-C); ``--wait`` stops waiting, the campaign goes on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import pydantic
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column
from sqlalchemy.exc import SQLAlchemyError

from producer.api import Producer
from producer.errors import InvalidField
from smsq.core import logs
from smsq.core.settings import ProvidersFileError, get_settings

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 failure (not found, not allowed now, nothing accepted, "
    "database or broker unreachable, bad configuration); 2 bad usage (unknown "
    "option, or a value smsq refuses: bad number, text too long, time in the past); "
    "130 interrupted."
)

console = Console()  # stdout: results
err = Console(stderr=True)  # stderr: progress, warnings, errors

JsonFlag = Annotated[
    bool, typer.Option("--json", help="print one JSON document on stdout, for scripts")
]


def _default_producer() -> Producer:
    return Producer.from_settings()


# The seam tests replace: how a command gets its Producer (database + broker).
producer_factory: Callable[[], Producer] = _default_producer


class Failure(Exception):
    """A command could not do what was asked; ``code`` is machine-readable."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "failed",
        exit_code: int = EXIT_FAILURE,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.exit_code = exit_code
        self.field = field


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr; the exit (1) for the caller to raise."""
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_FAILURE)


def not_found(what: str, ident: str) -> Failure:
    return Failure(f"no {what} with id {ident!r}", code="not_found")


def _report(failure: Failure, as_json: bool) -> NoReturn:
    where = f"{failure.field}: " if failure.field else ""
    err.print(
        f"[red]error:[/red] {escape(where + failure.message)}", highlight=False, soft_wrap=True
    )
    if as_json:
        emit_json(
            {"error": {"code": failure.code, "message": failure.message, "field": failure.field}}
        )
    raise typer.Exit(failure.exit_code)


@contextmanager
def guarded(as_json: bool = False) -> Iterator[None]:
    """Turn the errors a command can meet into a message and an exit code.

    Never a traceback for an expected problem: a refused value (exit 2), a
    database that is down or not migrated, a broken settings file (exit 1).
    Database error texts are cut to the driver's own first line: SQLAlchemy's
    full message repeats the statement's parameters, which can hold a
    message text (an OTP) or a phone number.
    """
    try:
        yield
    except Failure as exc:
        _report(exc, as_json)
    except InvalidField as exc:
        _report(
            Failure(exc.reason, code="invalid_field", exit_code=EXIT_USAGE, field=exc.field),
            as_json,
        )
    except ProvidersFileError as exc:
        _report(Failure(str(exc), code="configuration"), as_json)
    except pydantic.ValidationError as exc:
        _report(Failure(f"invalid settings: {exc}", code="configuration"), as_json)
    except SQLAlchemyError as exc:
        _report(Failure(database_problem(exc), code="database_error"), as_json)


def database_problem(exc: SQLAlchemyError) -> str:
    """A one-line, parameter-free description of a database error."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    hint = ""
    lowered = first.lower()
    if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        hint = " (is the schema migrated? run: smsq db upgrade)"
    return f"database: {first}{hint}"


def quiet_logs() -> None:
    """Only warnings on stderr unless SMSQ_LOG_LEVEL says otherwise.

    An operator command's own output is the result; info lines about
    enqueueing would only bury it (and stdout stays clean for ``--json``).
    """
    logs.configure_from(get_settings(), default_level="WARNING")


@contextmanager
def open_producer() -> Iterator[Producer]:
    """A Producer from :data:`producer_factory`, closed afterwards."""
    quiet_logs()
    producer = producer_factory()
    try:
        yield producer
    finally:
        producer.close()


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- output ------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Records, datetimes and enums as JSON values (datetimes in ISO 8601, UTC)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {k: jsonable(v) for k, v in value._asdict().items()}
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def emit_json(value: Any) -> None:
    """The one JSON document of a ``--json`` run, on stdout."""
    sys.stdout.write(json.dumps(jsonable(value), indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def id_column(header: str) -> Column:
    """A table column for an id: never cut or wrapped (it is copied into the next command)."""
    return Column(header, no_wrap=True, min_width=36)


def short_when(value: dt.datetime) -> str:
    """A time for a narrow column: UTC, to the minute."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")


def when(value: dt.datetime | None) -> str:
    """A time for a table: UTC, to the second; '-' for none."""
    if value is None:
        return "-"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def read_text_argument(text: str) -> str:
    """``-`` means the text comes on stdin (keeps an OTP out of shell history)."""
    if text != "-":
        return text
    return sys.stdin.read().rstrip("\n")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str) -> dt.timedelta | None:
    """``30s``, ``30m``, ``2h``, ``90d``; None when it is not one."""
    match = _DURATION.match(value)
    if match is None:
        return None
    return dt.timedelta(seconds=float(match[1]) * _UNITS[match[2]])
