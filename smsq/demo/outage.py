"""The demo's provider outage: one simulator refuses connections for a while.

Not an HTTP error: the simulator's listener is really closed
(:meth:`providers.simulator.server.ServerThread.stop_listening`), so the
workers' connects are refused, as when a provider's process is down, and
opened again on the same port :attr:`ProviderOutage.length` seconds after the
server is gone (``down`` below).
What the workers make of it is theirs (docs/routing.md): a request that
never reached the account goes to another account of its route, the
account's circuit breaker opens, and its probe brings the traffic back.

The times are wall-clock UTC, as the database's ``sent_at`` is, so the report
can put them side by side. ``started`` is when the listener was told to
close (it closes within about 0.1 s: new connections are refused from
then); ``down`` is when the last connection it had was closed, each having
answered one last request (a server shutting down gracefully: up to ~3 s),
and the server had stopped; ``ended`` is when it accepts connections again.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass

import structlog

from models.tables import utcnow
from providers.simulator.server import ServerThread

log = structlog.get_logger("smsq.demo")


@dataclass(frozen=True)
class OutageTimes:
    """When an outage began and ended; ``ended`` None: still on, or never back."""

    started: dt.datetime
    ended: dt.datetime | None
    down: dt.datetime | None = None
    """When the server had stopped: no connection left (None: not yet)."""
    cut_short: bool = False
    """The demo ended before the outage's length was up (and reopened the port)."""
    error: str | None = None
    """Why the server could not listen again, if it could not."""


class ProviderOutage:
    """Close ``server``'s listener for ``length`` seconds, in a thread of its own."""

    def __init__(self, server: ServerThread, account: str, length: float) -> None:
        self.server = server
        self.account = account
        self.length = length
        self._started: dt.datetime | None = None
        self._down: dt.datetime | None = None
        self._ended: dt.datetime | None = None
        self._error: str | None = None
        self._cut_short = False
        self._cut = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="smsq-demo-outage", daemon=True)

    @property
    def begun(self) -> bool:
        return self._started is not None

    @property
    def on(self) -> bool:
        """Refusing connections now."""
        with self._lock:
            return self._started is not None and self._ended is None and self._error is None

    def times(self) -> OutageTimes | None:
        """None before it began."""
        with self._lock:
            if self._started is None:
                return None
            return OutageTimes(
                self._started,
                self._ended,
                down=self._down,
                cut_short=self._cut_short,
                error=self._error,
            )

    def start(self) -> None:
        """Begin now (returns at once; the listener closes within ~0.1 s)."""
        with self._lock:
            self._started = utcnow()
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """End it early if still on (the port is opened again) and wait for that."""
        self._cut.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        assert self._started is not None
        log.info("demo fault: provider refusing connections", provider=self.account)
        self.server.stop_listening()
        with self._lock:
            self._down = utcnow()
        # Refusing every connection for ``length`` from now: the drain before
        # (open connections answering their last request) can take as long.
        cut = self._cut.wait(self.length)
        try:
            self.server.listen_again()
        except RuntimeError as exc:
            with self._lock:
                self._error = str(exc)
            log.error("demo fault: provider could not listen again", error=str(exc))
            return
        with self._lock:
            self._ended = utcnow()
            self._cut_short = cut
        log.info("demo fault over: provider accepting connections", provider=self.account)
