"""A minimal HTTP/1.1 provider stand-in for ``bench/transport.py``.

Run as its own process (``python bench/_endpoint.py --latency-ms 20``) so the
client under test and the server never share a GIL. It answers every request
after ``--latency-ms`` with a small panelsms-style JSON body::

    {"response": {"status": "OK", "transactionId": "<echoed>"}}

It is a raw ``asyncio.Protocol`` (no framework, keep-alive, ``call_later`` for
the latency) so it costs a few microseconds of CPU per request and is not the
bottleneck; ``GET /__stats`` returns its request count and CPU seconds so the
benchmark can show how busy it was. It prints ``PORT <n>`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
import time
from typing import cast

_TID = re.compile(rb"(?:^|&)transactionId=([^&]*)")
_CLEN = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.IGNORECASE)


class Stats:
    requests = 0


def _response(body: bytes, close: bool) -> bytes:
    head = (
        b"HTTP/1.1 200 OK\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: " + (b"close" if close else b"keep-alive") + b"\r\n\r\n"
    )
    return head + body


class Endpoint(asyncio.Protocol):
    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is not registered as an asyncio.Transport subclass.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[: end + 2])
            m = _CLEN.search(head)
            clen = int(m.group(1)) if m else 0
            total = end + 4 + clen
            if len(buf) < total:
                return
            body = bytes(buf[end + 4 : total])
            del buf[:total]
            self._handle(head, body)

    def _handle(self, head: bytes, body: bytes) -> None:
        close = _CLOSE.search(head) is not None
        line = head[: head.find(b"\r\n")]
        if b" /__stats " in line:
            payload = b'{"requests": %d, "cpu": %.6f}' % (Stats.requests, time.process_time())
            self._send(_response(payload, close), close)
            return
        Stats.requests += 1
        m = _TID.search(body) or _TID.search(line.replace(b"?", b"&"))
        tid = m.group(1) if m else b"0"
        payload = b'{"response": {"status": "OK", "transactionId": "' + tid + b'"}}'
        if self.latency > 0:
            self.loop.call_later(self.latency, self._send, _response(payload, close), close)
        else:
            self._send(_response(payload, close), close)

    def _send(self, data: bytes, close: bool) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        t.write(data)
        if close:
            t.close()


async def serve(host: str, port: int, latency: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Endpoint(latency), host, port, backlog=2048, reuse_address=True
    )
    bound = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"PORT {bound}\n")
    sys.stdout.flush()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with server:
        await stop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--latency-ms", type=float, default=20.0)
    args = ap.parse_args()
    try:  # optional; the figures in docs were taken with the stock loop
        import uvloop  # type: ignore[import-not-found]

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args.host, args.port, args.latency_ms / 1000.0))


if __name__ == "__main__":
    main()
