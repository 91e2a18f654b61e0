"""What can go wrong when talking to a provider, as data.

::

    ProviderError
    ├── RetryableError            retry later; the slot is freed while waiting
    │   ├── QueueFull             code 6 (or HTTP 503)
    │   ├── Throttled             code 7 (or HTTP 429); also slows the bucket
    │   ├── ProviderUnavailable   HTTP 5xx other than 503
    │   └── TransportError        the request never left (connect error, pool timeout)
    ├── PermanentError            every other code; ``code`` and the vendor's text kept
    ├── ProviderProtocolError     an answer we cannot parse; names what was received
    └── OutcomeUnknown            no readable outcome: the SMS may have been sent
        └── NoAnswer              read timeout, connection dropped mid-answer

An error read from a bare HTTP status (no vendor code in the body) keeps that
status in ``http_status``: the worker's circuit breaker
(``worker.provider_health``) counts 5xx answers without a vendor error, never
a readable code 6 or 7.

Credentials never appear in these messages: adapters build them from codes,
statuses and a bounded excerpt of the answer body.
"""

from __future__ import annotations

from providers.codes import Code, describe


class ProviderError(Exception):
    """Base of every provider failure."""

    code: int | None = None
    retry_after: float | None = None
    http_status: int | None = None
    """Set when the error was read from a bare HTTP status, not a vendor code."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RetryableError(ProviderError):
    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueueFull(RetryableError):
    code = Code.QUEUE_FULL


class Throttled(RetryableError):
    code = Code.THROTTLED


class ProviderUnavailable(RetryableError):
    """HTTP 5xx other than 503: the provider could not take the request."""


class TransportError(RetryableError):
    """The request did not reach the provider; safe to send again at once."""


class PermanentError(ProviderError):
    def __init__(self, code: int, description: str | None = None) -> None:
        self.code = code
        self.description = description or describe(code)
        super().__init__(f"provider error {code}: {self.description}")


class ProviderProtocolError(ProviderError):
    """The provider answered something we cannot read."""

    def __init__(self, what: str, received: str) -> None:
        self.received = received[:200]
        super().__init__(f"{what}; received {self.received!r}")


class OutcomeUnknown(ProviderError):
    """We sent the request and got no answer: the SMS may have gone out.

    Resolve by delivery report or by resending with the same transactionId,
    never by a blind resend with a new id.
    """


class NoAnswer(OutcomeUnknown):
    """The request left but no answer came (read timeout, connection dropped)."""


def error_for_code(
    code: int, description: str | None = None, *, retry_after: float | None = None
) -> ProviderError:
    """The error for a vendor code other than success (and roaming, 3).

    The one reading of a code as an error, for every vendor.
    """
    if code == Code.QUEUE_FULL:
        return QueueFull(f"provider error 6: {describe(6)}", retry_after=retry_after)
    if code == Code.THROTTLED:
        return Throttled(f"provider error 7: {describe(7)}", retry_after=retry_after)
    return PermanentError(code, description)


def error_for_http_status(status: int, *, retry_after: float | None = None) -> ProviderError | None:
    """The error a bare HTTP status means whatever the vendor, or None to read the body.

    The decided meanings (shared/providers): 429 throttled, 503 queue full,
    any other 5xx unavailable; all honour ``Retry-After``.
    """
    error: ProviderError
    if status == 429:
        error = Throttled("HTTP 429 from provider", retry_after=retry_after)
    elif status == 503:
        error = QueueFull("HTTP 503 from provider", retry_after=retry_after)
    elif status >= 500:
        error = ProviderUnavailable(f"HTTP {status} from provider", retry_after=retry_after)
    else:
        return None
    error.http_status = status
    return error
