"""Structured logs (structlog) routed through the standard ``logging`` module.

JSON lines in production (``SMSQ_LOG_JSON=1``), readable key=value lines in a
terminal; ``SMSQ_LOG_JSON`` and ``SMSQ_LOG_LEVEL`` are read by ``smsq.core.settings``
like every other setting (:func:`configure_from`). Going through ``logging``
means one level setting and one handler for our logs, Celery's, uvicorn's and
SQLAlchemy's, and lets tests capture them. A leaf like ``smsq.core.settings``: any
package may call :func:`configure`. Messages never carry credentials, API keys
or OTP texts: callers log ids, statuses and codes, not message bodies.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from smsq.core.settings import Settings

_configured = False

_SHARED: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def formatter(*, json: bool) -> logging.Formatter:
    """The formatter of smsq's log lines: JSON, or key=value for a terminal."""
    # Tracebacks are plain text, never rich's: rich renders every frame's
    # local variables (secrets, OTP texts) and takes seconds per traceback
    # while holding the handler's lock -- under a database outage that
    # stalled every thread that logs, the event loop included.
    processors: list[structlog.types.Processor] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta
    ]
    if json:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors.append(
            structlog.dev.ConsoleRenderer(
                colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
            )
        )
    return structlog.stdlib.ProcessorFormatter(processors=processors, foreign_pre_chain=_SHARED)


def configure_from(settings: Settings, *, default_level: str = "INFO") -> None:
    """:func:`configure` with ``SMSQ_LOG_JSON`` and ``SMSQ_LOG_LEVEL`` (``default_level``
    when unset: a service logs at INFO, an operator command only warns)."""
    configure(json=settings.log_json, level=settings.log_level or default_level)


def configure(*, json: bool = False, level: str = "INFO") -> None:
    """Set up structlog and the root handler once per process."""
    global _configured
    if _configured:
        return
    _configured = True
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(json=json))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO; a GET URL can carry a provider key.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
