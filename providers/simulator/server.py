"""Serving the simulator with uvicorn: in the foreground, or in a thread.

``serve`` is what ``smsq simulator`` runs. ``run_in_thread`` is for tests and
the demo: a real HTTP server on a free port (``port=0``) in a daemon thread,
returned once it accepts connections, stopped by ``.stop()`` or by leaving the
``with`` block. Logging stays at warnings and there is no access log: at
benchmark rates a line per request would cost more than the request.

A server in a thread can also go away and come back on the same port
(:meth:`ServerThread.stop_listening`, :meth:`ServerThread.listen_again`): while
it is away nothing listens there, so clients see *connection refused*, which
is what a provider whose process stopped looks like (``smsq demo``'s outage).
It goes without cutting a request the provider never read, which a client
could only call *unknown* (it may have been taken), in three steps:

1. The listener stops completing new connections (Linux: a socket filter
   that drops what reaches it, so a client's SYN goes unanswered and its
   retry a second later is refused), the connections the kernel had
   already completed are accepted, and only then is the listener closed.
   Closing it with connections still queued resets them after their
   clients may have written a request: in the one-process demo the queue
   often holds dozens. (Elsewhere: ``listen(0)``, which still lets one
   connection at a time into the queue.)
2. The connections it has answer what they are sent with
   ``Connection: close``, and only connections left idle for longer than a
   client keeps an idle connection are closed under it. Closing an idle
   keep-alive connection at once (uvicorn's own shutdown) races with a
   client writing a request on it.
3. uvicorn's shutdown: what is left is closed, the lifespan ends.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import struct
import threading
import time
from types import TracebackType
from typing import Any, Self

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from providers.simulator.app import create_app
from providers.simulator.core import Simulator

DEFAULT_PORT = 8025  # smsq.core.settings.SIMULATOR_URL
# Seconds given to open requests (a hanging one) when the server stops.
GRACEFUL_SHUTDOWN = 2
KEEP_ALIVE = 30  # seconds
REBIND_WAIT = 0.2  # seconds between tries to listen on the old port again
# Seconds stop_listening lets the connections it has close with their last
# answer before closing the rest: longer than a client keeps an idle
# connection (smsq's providers.http.KEEPALIVE_EXPIRY, 2 s), so none is
# closed under a client that could still send on it.
DRAIN = 3.0


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


async def _close_listener(listener: asyncio.AbstractServer, within: float) -> None:
    """Close ``listener`` once the connections the kernel completed for it
    are accepted (at most ``within`` seconds), taking no new ones meanwhile.

    Runs on the server's loop, which accepts while this waits; the last
    check and the close have no await between them.
    """
    loop = asyncio.get_running_loop()
    sockets = [
        socket.socket(fileno=os.dup(s.fileno())) for s in getattr(listener, "sockets", None) or ()
    ]
    try:
        for sock in sockets:
            _complete_no_new_connection(sock)
        deadline = loop.time() + within
        while any(_queued(sock) for sock in sockets) and loop.time() < deadline:
            await asyncio.sleep(0.002)
        listener.close()
    finally:
        for sock in sockets:
            sock.close()  # the duplicate only


class _SockFilter(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    )


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter)))


SO_ATTACH_FILTER = 26  # Linux; not in Python's socket module
_DROP_ALL = (_SockFilter * 1)(_SockFilter(0x06, 0, 0, 0))  # BPF_RET|BPF_K 0: keep 0 bytes
_DROP_ALL_PROGRAM = _SockFprog(1, _DROP_ALL)


def _complete_no_new_connection(sock: socket.socket) -> None:
    """Let no new connection into ``sock``'s accept queue: on Linux a filter
    dropping every packet the listener sees (SYNs, and the ACKs that would
    complete a handshake), else ``listen(0)``."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(_DROP_ALL_PROGRAM))
    except OSError:
        sock.listen(0)


def _queued(sock: socket.socket) -> bool:
    """Connections waiting in a listening socket's accept queue (Linux's
    ``TCP_INFO`` reports their count as ``tcpi_unacked``); elsewhere: none known."""
    option = getattr(socket, "TCP_INFO", None)
    if option is None:
        return False
    info = sock.getsockopt(socket.IPPROTO_TCP, option, 104)
    unacked: int = struct.unpack_from("8B6I", info)[12]
    return unacked > 0


class _Closer:
    """An ASGI app whose responses say ``Connection: close`` while ``closing``
    (uvicorn then closes the connection once the answer is out).

    Decided when the answer starts, not when the request came in: an answer
    that left keep-alive after the drain began would let its client send
    again on that connection for as long as it keeps an idle one.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.closing = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def closing_send(message: Message) -> None:
            if self.closing and message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, closing_send)


class ServerThread:
    """Any ASGI app served by uvicorn in a background thread; ``url`` has the
    real port. smsq's demo and tests serve the API the same way."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        """The port asked for; once started, the one it listens on."""
        self._app = _Closer(app)
        self._error: BaseException | None = None
        self._server, self._thread = self._serve_on(port)
        self.url = ""

    def _serve_on(self, port: int) -> tuple[uvicorn.Server, threading.Thread]:
        server = uvicorn.Server(_config(self._app, self.host, port))
        thread = threading.Thread(target=self._run, args=(server,), name="smsq-server", daemon=True)
        return server, thread

    def _run(self, server: uvicorn.Server) -> None:
        try:
            server.run()
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
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{self.port}"
        return self

    @property
    def listening(self) -> bool:
        """Serving now: started, and neither stopped nor stopping."""
        return self._server.started and not self._server.should_exit and self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)

    def stop_listening(self, drain: float = DRAIN, timeout: float = 10.0) -> None:
        """Go away until :meth:`listen_again`; returns once gone.

        The listening socket takes no new connection at once and is closed
        as soon as those already queued are accepted, so new connections are
        refused (module docstring). For up to ``drain`` seconds (less once
        none is left) the open connections answer what they are sent with
        ``Connection: close``; then the rest are closed, requests already
        read still answered, and the app's lifespan ends (the simulator stops
        sending reports). ``drain=0``: uvicorn's plain shutdown.
        """
        if self.listening and drain > 0:
            for listener in self._server.servers:
                closing = _close_listener(listener, within=drain)
                asyncio.run_coroutine_threadsafe(closing, listener.get_loop()).result(
                    timeout + drain
                )
            self._app.closing = True
            deadline = time.monotonic() + drain
            while self._server.server_state.connections and time.monotonic() < deadline:
                time.sleep(0.02)
        self.stop(timeout)

    def listen_again(self, timeout: float = 10.0) -> Self:
        """Serve the same app on the same port again, its lifespan started anew.

        Raises RuntimeError when the port cannot be had back within ``timeout``
        (something else took it meanwhile).
        """
        if self._thread.is_alive():
            raise RuntimeError(f"{self.url} is still serving: stop_listening first")
        deadline = time.monotonic() + timeout
        self._app.closing = False
        while True:
            self._error = None
            self._server, self._thread = self._serve_on(self.port)
            try:
                return self.start(max(0.1, deadline - time.monotonic()))
            except RuntimeError:
                if time.monotonic() + REBIND_WAIT >= deadline:
                    raise
                time.sleep(REBIND_WAIT)

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
