"""Serving the simulator with uvicorn: in the foreground, or in a thread.

``serve`` is what ``smsq simulator`` runs. ``run_in_thread`` is for tests and
the demo: a real HTTP server on a free port (``port=0``) in a daemon thread,
returned once it accepts connections, stopped by ``.stop()`` or by leaving the
``with`` block. Logging stays at warnings and there is no access log: at
benchmark rates a line per request would cost more than the request.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any, Self

import uvicorn

from providers.simulator.app import create_app
from providers.simulator.core import Simulator

DEFAULT_PORT = 8025  # smsq.core.settings.SIMULATOR_URL
# Seconds given to open requests (a hanging one) when the server stops.
GRACEFUL_SHUTDOWN = 2
KEEP_ALIVE = 30  # seconds


def _config(app: Any, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        ws="none",  # no websocket library needed, or imported
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
        # Like a real provider: idle connections stay open well beyond the
        # client's own keep-alive expiry, so the client closes them first.
        timeout_keep_alive=KEEP_ALIVE,
    )


def serve(
    sim: Simulator, host: str = "127.0.0.1", port: int = DEFAULT_PORT, **app_options: Any
) -> None:
    """Serve ``sim`` until interrupted (blocking)."""
    uvicorn.Server(_config(create_app(sim, **app_options), host, port)).run()


class ServerThread:
    """Any ASGI app served by uvicorn in a background thread; ``url`` has the
    real port. smsq's demo and tests serve the API the same way."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._server = uvicorn.Server(_config(app, host, port))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="smsq-server", daemon=True)
        self.url = ""

    def _run(self) -> None:
        try:
            self._server.run()
        except BaseException as exc:  # uvicorn exits with SystemExit on a bind error
            self._error = exc

    def start(self, timeout: float = 10.0) -> Self:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"server did not start on {self.host}: {self._error!r}"
                    if self._error
                    else f"server did not start on {self.host} within {timeout} s"
                )
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{port}"
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class SimulatorServer(ServerThread):
    """A simulator served in a background thread."""

    def __init__(self, sim: Simulator, host: str, port: int, app_options: dict[str, Any]) -> None:
        super().__init__(create_app(sim, **app_options), host, port)
        self.sim = sim


def run_in_thread(
    sim: Simulator, host: str = "127.0.0.1", port: int = 0, **app_options: Any
) -> SimulatorServer:
    """Start serving ``sim`` in a thread; returns once it accepts connections.

    ``app_options`` go to :func:`create_app` (``dlr_client``, ``send_reports``, ...).
    """
    return SimulatorServer(sim, host, port, app_options).start()
