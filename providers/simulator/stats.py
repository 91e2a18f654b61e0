"""What the simulator saw, for tests and benchmarks to assert on.

Counters are updated per request (cheap increments, no per-request objects
kept) and turned into JSON only when asked. ``duplicates`` is the point of
``per_transaction``: a message part accepted twice under one transactionId is
an SMS the user received twice, which smsq promises never to cause.
``per_number`` counts messages by destination (digits, no '+'; a long
panelsms text counts once, by its first part), so a resend under a *new* id
shows too; ``dlr.per_number`` counts the reports the receiver took (2xx) by
destination, so a chaos run can check each one was applied.
``per_second`` counts the numbers accepted in each second (Unix time) and
``refused_per_second`` the requests answered with a vendor error: together,
what a sender's token bucket spent at this provider.
"""

from __future__ import annotations

from collections import Counter
from typing import Any


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.by_route: Counter[str] = Counter()
        self.accepted = 0
        self.roaming = 0
        self.rejected: Counter[int] = Counter()
        self.http_5xx = 0
        self.hangs = 0
        self.outages = 0
        self.parts: Counter[tuple[str, int]] = Counter()  # (transactionId, seq)
        self.per_number: Counter[str] = Counter()
        self.per_second: Counter[int] = Counter()
        self.refused_per_second: Counter[int] = Counter()
        self.dlr_sent = 0
        self.dlr_failed = 0
        self.dlr_per_number: Counter[str] = Counter()

    def request(self, route: str) -> None:
        self.requests += 1
        self.by_route[route] += 1

    def panelsms_part(
        self, transaction_id: str, number: str, seq: int, second: int, roaming: bool
    ) -> None:
        self.accepted += 1
        self.roaming += roaming
        self.parts[(transaction_id, seq)] += 1
        if seq == 1:
            self.per_number[number] += 1
        self.per_second[second] += 1

    def brand_numbers(self, numbers: list[str], second: int) -> None:
        self.accepted += len(numbers)
        self.per_number.update(numbers)
        self.per_second[second] += len(numbers)

    def refused(self, code: int, second: int) -> None:
        """A request answered with vendor error ``code`` (throttled, queue
        full, ...): it cost the sender a token all the same."""
        self.rejected[code] += 1
        self.refused_per_second[second] += 1

    def report(self, delivered: bool, number: str) -> None:
        if not delivered:
            self.dlr_failed += 1
            return
        self.dlr_sent += 1
        if number:
            self.dlr_per_number[number] += 1

    def to_dict(self, dlr_pending: int) -> dict[str, Any]:
        """JSON-ready (string keys, lists): the same dict ``GET /_stats`` serves."""
        per_transaction: Counter[str] = Counter()
        for (transaction_id, _), count in self.parts.items():
            per_transaction[transaction_id] += count
        return {
            "requests": {"total": self.requests, "by_route": dict(self.by_route)},
            "accepted": self.accepted,
            "roaming": self.roaming,
            "rejected": {
                "total": self.rejected.total(),
                "by_code": {str(code): n for code, n in sorted(self.rejected.items())},
            },
            "injected": {"http_5xx": self.http_5xx, "hangs": self.hangs, "outages": self.outages},
            "per_transaction": dict(per_transaction),
            "duplicates": [[tid, seq] for (tid, seq), n in self.parts.items() if n > 1],
            "per_number": dict(self.per_number),
            "max_per_second": max(self.per_second.values(), default=0),
            "per_second": {str(s): n for s, n in sorted(self.per_second.items())},
            "refused_per_second": {str(s): n for s, n in sorted(self.refused_per_second.items())},
            "dlr": {
                "pending": dlr_pending,
                "sent": self.dlr_sent,
                "failed": self.dlr_failed,
                "per_number": dict(self.dlr_per_number),
            },
        }
