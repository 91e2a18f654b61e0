"""A simulator served in a thread can go away (connection refused) and come back
on the same port, with what it counted kept: ``smsq demo``'s provider outage."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from providers.http import KEEPALIVE_EXPIRY
from providers.simulator import SimConfig, Simulator, run_in_thread
from providers.simulator.server import DRAIN, _Closer, _complete_no_new_connection, _queued

PANEL = {"user": "demo@example.com", "apiKey": "demo-panel-key", "to": "+1222333444"}


def send(client: httpx.Client, number: str) -> httpx.Response:
    return client.get("/sendMtSms.php", params={**PANEL, "to": number, "message": "Hello"})


def test_a_stopped_listener_refuses_connections_and_comes_back_on_the_same_port() -> None:
    sim = Simulator(SimConfig())
    with run_in_thread(sim, send_reports=False) as server, httpx.Client() as client:
        client.base_url = httpx.URL(server.url)
        url = server.url
        assert send(client, "+1222333444").status_code == 200
        assert server.listening

        server.stop_listening(drain=0.5)
        assert not server.listening
        # A pooled keep-alive connection was closed too: a fresh connect is refused.
        with pytest.raises(httpx.ConnectError):
            send(client, "+1222333445")

        server.listen_again()
        assert server.listening
        assert server.url == url
        assert send(client, "+1222333446").status_code == 200
    # The simulator's state outlives its listener: two sends counted, the refused one never.
    assert sim.stats()["per_number"] == {"1222333444": 1, "1222333446": 1}


def test_listen_again_refuses_while_still_serving() -> None:
    with (
        run_in_thread(Simulator(SimConfig()), send_reports=False) as server,
        pytest.raises(RuntimeError, match="still serving"),
    ):
        server.listen_again()


def test_while_it_drains_new_connections_are_refused_and_open_ones_answer_then_close() -> None:
    """A keep-alive connection is never closed under a client that may be writing
    on it: it answers once more, saying ``Connection: close``."""
    sim = Simulator(SimConfig())
    with run_in_thread(sim, send_reports=False) as server, httpx.Client() as kept:
        assert send_to(kept, server.url, "+1222333444").headers.get("connection") != "close"
        stopping = threading.Thread(target=server.stop_listening, kwargs={"drain": 5.0})
        began = time.monotonic()
        stopping.start()
        time.sleep(0.3)  # the listener closes at once; the drain goes on

        with httpx.Client() as fresh, pytest.raises(httpx.ConnectError):
            send_to(fresh, server.url, "+1222333445")
        last = send_to(kept, server.url, "+1222333446")  # on the kept connection
        assert last.status_code == 200
        assert last.headers["connection"] == "close"

        stopping.join(10)
        # No connection left: the drain ended early, not after 5 s.
        assert time.monotonic() - began < 3.0
        assert not server.listening
    assert sim.stats()["per_number"] == {"1222333444": 1, "1222333446": 1}


def test_the_drain_outlasts_the_clients_keep_alive() -> None:
    assert DRAIN > KEEPALIVE_EXPIRY


def send_to(client: httpx.Client, url: str, number: str) -> httpx.Response:
    return client.get(f"{url}/sendMtSms.php", params={**PANEL, "to": number, "message": "Hi"})


@pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="tests SO_ATTACH_FILTER, which only Linux has; elsewhere the simulator "
    "falls back to listen(0), which lets one connection in at a time by design",
)
def test_a_stopping_listener_completes_no_new_connection_but_keeps_the_queued_ones() -> None:
    """Closing a listener resets the connections queued for it, whose clients
    may have written a request already: it first lets none in, then accepts
    those queued, then closes (and a connect is refused)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        queued = socket.create_connection(listener.getsockname())
        _complete_no_new_connection(listener)
        assert _queued(listener)
        with pytest.raises(TimeoutError):  # its SYN goes unanswered
            socket.create_connection(listener.getsockname(), timeout=0.3)
        accepted, _ = listener.accept()
        assert not _queued(listener)
        queued.sendall(b"x")
        assert accepted.recv(1) == b"x"
        accepted.close()
        queued.close()
        address = listener.getsockname()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=0.3)


async def test_an_answer_started_after_the_drain_began_says_close_whatever_its_request() -> None:
    """A request read before the drain began but answered after it must not
    leave its connection open for the client to send on again."""
    answering = asyncio.Event()

    async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
        await answering.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    closer = _Closer(slow_app)
    sent: list[Message] = []

    async def record(message: Message) -> None:
        sent.append(message)

    async def nothing() -> Message:
        return {"type": "http.disconnect"}

    request = asyncio.create_task(closer({"type": "http"}, nothing, record))
    await asyncio.sleep(0)
    closer.closing = True  # the drain begins while the request is being handled
    answering.set()
    await request
    assert (b"connection", b"close") in sent[0]["headers"]
