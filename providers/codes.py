"""The vendor's error-code table (panelsms; the brand API reuses it).

One place for what each code means: the adapters map answers to errors with
it (:func:`providers.errors.error_for_code`), the simulator and the drop-in
answer with it (:class:`Rejection`). How each vendor puts a code on the wire
is in its ``protocol`` module.
"""

from __future__ import annotations

from enum import IntEnum


class Code(IntEnum):
    ACCOUNT_DISABLED = 1
    INVALID_API_KEY = 2
    ROAMING = 3  # submitted to a roaming network: still delivered, not a failure
    INVALID_SOURCE = 4
    INVALID_DESTINATION = 5
    QUEUE_FULL = 6  # retry after a delay
    THROTTLED = 7  # retry after a delay
    INVALID_MESSAGE_DATA = 8
    INSUFFICIENT_CREDIT = 9
    INVALID_UDH = 10
    DESTINATION_BARRED = 11
    INVALID_SCHEDULED_TIME = 12
    MESSAGE_TOO_LONG = 13
    INVALID_DCS = 14
    NOT_SUPPORTED = 15


DESCRIPTIONS: dict[int, str] = {
    1: "Account is disabled or doesn't exist",
    2: "Invalid API key",
    3: "Message submitted to a Roaming Network",
    4: "Invalid source address",
    5: "Invalid destination address",
    6: "Message queue full",
    7: "Throttling error - rate limit exceeded",
    8: "Invalid message data",
    9: "Insufficient credits/balance",
    10: "Invalid User Data Header (UDH)",
    11: "Destination barred",
    12: "Invalid scheduled time",
    13: "Message too long",
    14: "Invalid data coding scheme (DCS)",
    15: "Operation not supported",
}

# "Retry after a delay": answered with a Retry-After header, retried by smsq.
RETRYABLE_CODES = frozenset({Code.QUEUE_FULL, Code.THROTTLED})


def describe(code: int) -> str:
    return DESCRIPTIONS.get(code, f"unknown provider code {code}")


class Rejection(Exception):
    """A request the vendor answers with an error ``code`` (``detail`` says why)."""

    def __init__(self, code: int, detail: str | None = None) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail
