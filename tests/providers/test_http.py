"""The pooled client's failure behaviour, against small real servers on 127.0.0.1.

Both transports must raise what httpx's own transport raises (the table in
:mod:`providers.http`), so that :func:`providers.request.send_request` resends
only requests that never left. Each test counts the requests the server read in
full: a request the server received must never be sent a second time (httpx-aiohttp
0.2.0 reported "closed after reading the request" as ``ConnectTimeout``, which
``send_request`` resent: duplicate SMS).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType

import httpx
import pytest

from providers.errors import OutcomeUnknown, TransportError
from providers.http import TransportName, make_async_client
from providers.request import send_request

# What the server does once it has read a whole request; True keeps the connection.
Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]

SHORT_POOL = httpx.Timeout(5.0, pool=0.2)  # make_async_client fixes the pool wait at 5 s


class LocalServer:
    """An HTTP/1.1 server on 127.0.0.1 that runs ``answer`` after each request.

    ``requests`` counts the requests read in full (head and body); ``received``
    is set when the first one has been read.
    """

    def __init__(self, answer: Answer) -> None:
        self._answer = answer
        self.requests = 0
        self.received = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/send"

    async def __aenter__(self) -> LocalServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for writer in self._writers:
            writer.transport.abort()  # the handlers' reads end with EOF
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=1.0)
            for task in pending:
                task.cancel()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            while await self._read_request(reader):
                self.requests += 1
                self.received.set()
                if not await self._answer(reader, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False  # the client closed an idle connection
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await reader.readexactly(length)
        return True


async def answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Type: text/plain\r\n\r\nOK_1")
    await writer.drain()
    return True


async def answer_redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    return True


async def close_without_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    return False


async def reset_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return False  # closing with SO_LINGER 0 sends RST


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    await reader.read()  # until the client gives up and closes
    return False


async def answer_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"NOT HTTP\r\n\r\n")
    await writer.drain()
    await reader.read()  # let the parser fail, not a close
    return False


@pytest.fixture(params=["aiohttp", "httpx"])
def transport(request: pytest.FixtureRequest) -> TransportName:
    name: TransportName = request.param
    return name


@pytest.fixture
async def ok_server() -> AsyncIterator[LocalServer]:
    async with LocalServer(answer_ok) as server:
        yield server


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def assert_pool_slot_free(client: httpx.AsyncClient, ok_server: LocalServer) -> None:
    """The (one-connection) client still serves a normal request at once."""
    response = await client.post(ok_server.url, content=b"to=1", timeout=SHORT_POOL)
    assert response.status_code == 200
    assert response.text == "OK_1"


# --- 1. nothing listening -------------------------------------------------------


async def test_connection_refused_is_connect_error_then_transport_error(
    transport: TransportName, ok_server: LocalServer
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/send"
    async with make_async_client(timeout=2.0, max_connections=1, transport=transport) as client:
        with pytest.raises(httpx.ConnectError):
            await client.post(url, content=b"to=1")
        with pytest.raises(TransportError, match="after 3 attempts: ConnectError"):
            await send_request(client, "POST", url, form={"to": "1"}, timeout=2.0)
        await assert_pool_slot_free(client, ok_server)


# --- 2. closed after reading the request: the duplicate-SMS regression ------------


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_close_after_request_is_not_resent_duplicate_sms_regression(
    request: pytest.FixtureRequest, transport: TransportName, method: str, ok_server: LocalServer
) -> None:
    async with (
        LocalServer(close_without_answer) as server,
        make_async_client(timeout=2.0, max_connections=1, transport=transport) as client,
    ):
        with pytest.raises(httpx.RemoteProtocolError):
            await client.request(method, server.url)
        assert server.requests == 1

        with pytest.raises(OutcomeUnknown, match="RemoteProtocolError"):
            await send_request(client, method, server.url, query={"to": "1"}, timeout=2.0)
        assert server.requests == 2, "sent again after the server had read it"
        await assert_pool_slot_free(client, ok_server)


# --- 3. reset after reading the request -------------------------------------------


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_reset_after_request_is_read_error_and_not_resent(
    request: pytest.FixtureRequest, transport: TransportName, method: str, ok_server: LocalServer
) -> None:
    async with (
        LocalServer(reset_connection) as server,
        make_async_client(timeout=2.0, max_connections=1, transport=transport) as client,
    ):
        with pytest.raises(httpx.ReadError):
            await client.request(method, server.url)
        assert server.requests == 1

        with pytest.raises(OutcomeUnknown, match="ReadError"):
            await send_request(client, method, server.url, query={"to": "1"}, timeout=2.0)
        assert server.requests == 2, "sent again after the server had read it"
        await assert_pool_slot_free(client, ok_server)


# --- 4. no answer within the read timeout -----------------------------------------


async def test_no_answer_is_read_timeout_and_not_resent(
    transport: TransportName, ok_server: LocalServer
) -> None:
    async with (
        LocalServer(never_answer) as server,
        make_async_client(timeout=0.3, max_connections=1, transport=transport) as client,
    ):
        with pytest.raises(httpx.ReadTimeout):
            await client.post(server.url, content=b"to=1")
        assert server.requests == 1

        with pytest.raises(OutcomeUnknown, match="ReadTimeout"):
            await send_request(client, "POST", server.url, form={"to": "1"}, timeout=0.3)
        assert server.requests == 2, "sent again after the server had read it"
        await assert_pool_slot_free(client, ok_server)


# --- 5. an answer that is not HTTP --------------------------------------------------


async def test_garbage_status_line_is_remote_protocol_error(
    transport: TransportName, ok_server: LocalServer
) -> None:
    async with (
        LocalServer(answer_garbage) as server,
        make_async_client(timeout=2.0, max_connections=1, transport=transport) as client,
    ):
        with pytest.raises(httpx.RemoteProtocolError):  # not a raw aiohttp exception
            await client.post(server.url, content=b"to=1")
        assert server.requests == 1

        with pytest.raises(OutcomeUnknown, match="RemoteProtocolError"):
            await send_request(client, "POST", server.url, form={"to": "1"}, timeout=2.0)
        assert server.requests == 2, "sent again after the server had read it"
        await assert_pool_slot_free(client, ok_server)


# --- 6. pool exhausted ----------------------------------------------------------------


async def test_pool_exhausted_is_pool_timeout_and_the_slot_comes_back(
    transport: TransportName, ok_server: LocalServer
) -> None:
    async with (
        LocalServer(never_answer) as hanging,
        make_async_client(timeout=5.0, max_connections=1, transport=transport) as client,
    ):
        stuck = asyncio.create_task(client.post(hanging.url, content=b"to=1"))
        try:
            await asyncio.wait_for(hanging.received.wait(), timeout=2.0)

            with pytest.raises(httpx.PoolTimeout):
                await client.post(ok_server.url, content=b"to=2", timeout=SHORT_POOL)

            # Never sent, so send_request retries it, then gives up as TransportError.
            client.timeout = httpx.Timeout(5.0, pool=0.1)
            with pytest.raises(TransportError, match="after 3 attempts: PoolTimeout"):
                await send_request(client, "POST", ok_server.url, form={"to": "2"})
            assert ok_server.requests == 0
        finally:
            stuck.cancel()
            with pytest.raises(asyncio.CancelledError):
                await stuck
        assert hanging.requests == 1

        await assert_pool_slot_free(client, ok_server)  # the cancelled request let go
        await assert_pool_slot_free(client, ok_server)  # and so did the finished one


# --- 7. normal answers ----------------------------------------------------------------


async def test_a_normal_answer_and_no_redirects_followed(
    transport: TransportName, ok_server: LocalServer
) -> None:
    async with (
        LocalServer(answer_redirect) as redirecting,
        make_async_client(timeout=2.0, max_connections=1, transport=transport) as client,
    ):
        response = await send_request(client, "POST", ok_server.url, form={"to": "1"}, timeout=2.0)
        assert (response.status_code, response.text) == (200, "OK_1")
        response = await client.get(ok_server.url, timeout=SHORT_POOL)
        assert (response.status_code, response.text) == (200, "OK_1")
        assert ok_server.requests == 2

        response = await send_request(client, "POST", redirecting.url, form={"to": "1"})
        assert response.status_code == 302
        assert response.headers["location"] == "/elsewhere"
        assert redirecting.requests == 1
        assert ok_server.requests == 2
