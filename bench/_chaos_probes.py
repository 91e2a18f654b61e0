"""What watches a chaos scenario while it runs: three background threads.

- the OTP trickle: ``POST /v1/messages`` (kind ``otp``) at ``--otp-rate`` per
  second, each to a new number; the accept time of every 2xx is kept;
- the provider poll: ``GET /_stats`` every ``POLL`` seconds, to see when each
  OTP first reached the provider and how the campaign flows;
- the health probe: ``GET /healthz`` every ``POLL / 2`` seconds, its latency
  kept (None for no answer within 5 s, an error or a non-200).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx

from bench._chaos_stack import ChaosStack

POLL = 0.5
HEALTH_TIMEOUT = 5.0


def otp_number(i: int) -> str:
    return f"+4917000{i:06d}"


@dataclass
class Observed:
    otp_accepted: dict[str, float] = field(default_factory=dict)  # number -> accept time
    otp_refused: int = 0  # requests answered non-2xx or not at all
    otp_first_seen: dict[str, float] = field(default_factory=dict)  # at the provider
    reached: list[tuple[float, int]] = field(default_factory=list)  # (time, sends so far)
    injected: list[tuple[float, int]] = field(default_factory=list)  # (time, bare 503s so far)
    health: list[tuple[float, float | None]] = field(default_factory=list)  # None: no answer

    def worst_otp_latency(self) -> float | None:
        """Accept -> provider, worst OTP; an OTP never seen counts from accept to now."""
        now = time.time()
        waits = [
            self.otp_first_seen.get(number, now) - accepted
            for number, accepted in self.otp_accepted.items()
        ]
        return max(waits, default=None)

    def sends(self) -> int:
        return self.reached[-1][1] if self.reached else 0

    def worst_health(self, start: float, end: float) -> tuple[float, int]:
        """The slowest answer to /healthz in [start, end], and how many got none."""
        during = [latency for t, latency in self.health if start <= t <= end]
        answered = [latency for latency in during if latency is not None]
        return max(answered, default=0.0), len(during) - len(answered)


class Probes:
    def __init__(self, stack: ChaosStack, otp_rate: float) -> None:
        self.stack = stack
        self.otp_rate = otp_rate
        self.seen = Observed()
        self._stop = threading.Event()
        self._stop_otp = threading.Event()
        self._threads = [
            threading.Thread(target=self._poll_provider, daemon=True),
            threading.Thread(target=self._probe_health, daemon=True),
        ]
        self._otp_thread = threading.Thread(target=self._trickle, daemon=True)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        if self.otp_rate > 0:
            self._otp_thread.start()

    def stop_otp(self) -> None:
        self._stop_otp.set()
        if self._otp_thread.is_alive():
            self._otp_thread.join(HEALTH_TIMEOUT + 5)

    def stop(self) -> None:
        self.stop_otp()
        self._stop.set()
        for thread in self._threads:
            thread.join(HEALTH_TIMEOUT + 5)

    def _trickle(self) -> None:
        headers = {"Authorization": f"Bearer {self.stack.key}"}
        i = 0
        with httpx.Client(base_url=self.stack.api_url, timeout=HEALTH_TIMEOUT) as http:
            while not self._stop_otp.wait(1 / self.otp_rate):
                number = otp_number(i)
                i += 1
                body = {"to": number, "text": "Your code is 123456", "kind": "otp"}
                try:
                    response = http.post("/v1/messages", json=body, headers=headers)
                except httpx.HTTPError:
                    self.seen.otp_refused += 1
                    continue
                if response.is_success:
                    self.seen.otp_accepted[number] = time.time()
                else:
                    self.seen.otp_refused += 1

    def _poll_provider(self) -> None:
        while not self._stop.wait(POLL):
            stats = self.stack.sim_stats()
            now = time.time()
            per_number = stats["per_number"]
            self.seen.reached.append((now, sum(per_number.values())))
            self.seen.injected.append((now, stats["outages"]))
            for number in list(self.seen.otp_accepted):
                if number not in self.seen.otp_first_seen and per_number.get(number[1:]):
                    self.seen.otp_first_seen[number] = now

    def _probe_health(self) -> None:
        with httpx.Client(timeout=HEALTH_TIMEOUT) as http:
            while not self._stop.wait(POLL / 2):
                t0 = time.time()
                try:
                    ok = http.get(f"{self.stack.api_url}/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.seen.health.append((t0, time.time() - t0 if ok else None))
