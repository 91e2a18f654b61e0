"""Counting connection attempts to a local port that refuses them.

When a provider's process is gone, its port answers every connection
attempt with a TCP reset: nothing listens that could count the requests
smsq still makes. A listener put there to count them would change what smsq
sees (a connection accepted and closed is "the answer could not be read",
``unknown``, not "refused"). So this watches the loopback interface instead:
a packet socket (Linux, needs root or CAP_NET_RAW) with a classic BPF filter
that passes only TCP SYNs without ACK to the port, i.e. one per
``connect()`` (a refused connect is not retried by the kernel). Loopback
shows each packet twice, as sent and as received: only the received copy
counts. The times are kept, so any window can be counted afterwards.
"""

from __future__ import annotations

import ctypes
import socket
import struct
import threading
import time

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4


def _syn_filter(port: int) -> list[tuple[int, int, int, int]]:
    """cBPF on Ethernet frames: IPv4, TCP, not a fragment, dst ``port``, SYN and not ACK."""
    return [
        (0x28, 0, 0, 12),  # ldh [12]: ethertype
        (0x15, 0, 10, 0x0800),  # IPv4, else drop
        (0x30, 0, 0, 23),  # ldb [23]: IP protocol
        (0x15, 0, 8, 6),  # TCP, else drop
        (0x28, 0, 0, 20),  # ldh [20]: flags and fragment offset
        (0x45, 6, 0, 0x1FFF),  # a fragment: drop
        (0xB1, 0, 0, 14),  # ldxb 4*([14]&0xf): IP header length
        (0x48, 0, 0, 16),  # ldh [x+16]: TCP destination port
        (0x15, 0, 3, port),  # the port, else drop
        (0x50, 0, 0, 27),  # ldb [x+27]: TCP flags
        (0x54, 0, 0, 0x12),  # and SYN|ACK
        (0x15, 1, 0, 0x02),  # SYN alone: keep
        (0x06, 0, 0, 0),  # drop
        (0x06, 0, 0, 0xFFFF),  # keep
    ]


class SynCounter:
    """Times of the connection attempts to ``127.0.0.1:port`` from ``start`` to ``stop``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.times: list[float] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="syn-counter", daemon=True)
        self._sock: socket.socket | None = None
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            program = _syn_filter(port)
            code = b"".join(struct.pack("HBBI", *insn) for insn in program)
            buffer = ctypes.create_string_buffer(code)
            fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
            sock.bind(("lo", 0))
            sock.settimeout(0.2)
            self._sock = sock
        except (OSError, AttributeError) as exc:  # not Linux, or no CAP_NET_RAW
            self.error = f"{type(exc).__name__}: {exc}"

    def start(self) -> SynCounter:
        if self._sock is not None:
            self._thread.start()
        return self

    def _run(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                _data, address = self._sock.recvfrom(128)
            except TimeoutError:
                continue
            except OSError:
                return
            if address[2] != PACKET_OUTGOING:
                self.times.append(time.time())

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
        if self._sock is not None:
            self._sock.close()

    def between(self, start: float, end: float) -> int:
        return sum(1 for t in self.times if start <= t < end)
