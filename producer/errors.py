"""What the producer raises when a request cannot be accepted.

::

    ValueError
     └── InvalidField        one input is wrong; .field names it, .reason says why
    ConnectionError
     └── Unavailable         the database is away; retry after .retry_after seconds

A web app maps :class:`InvalidField` to a 422 (the HTTP API does) or shows
``reason`` next to the form field named ``field``. Nothing is written to the
database when it is raised.

:class:`Unavailable` comes within seconds when PostgreSQL is down, restarting
or unreachable (the HTTP API answers it with 503 and ``Retry-After``). The
call may or may not have been stored if the database went away during its
commit: retry it with the same ``idempotency_key`` to be sure it is stored
exactly once. The reason never repeats the value: a phone number
or a text is personal data and does not belong in logs or error trackers.
"""

from __future__ import annotations


class InvalidField(ValueError):
    """One input of a request is wrong; ``str()`` is ``"<field>: <reason>"``."""

    field: str
    reason: str

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def __reduce__(self) -> tuple[type[InvalidField], tuple[str, str]]:
        # The default pickling replays ``args`` (the joined message) into
        # __init__, which takes two; errors may travel through Celery results.
        return (type(self), (self.field, self.reason))


class Unavailable(ConnectionError):
    """A service smsq needs did not answer (``service``: ``"database"``); retry
    after ``retry_after`` seconds. ``str()`` never carries a URL or host."""

    service: str
    retry_after: int

    def __init__(self, service: str, retry_after: int = 5) -> None:
        super().__init__(f"the {service} is unavailable; retry in {retry_after} s")
        self.service = service
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[type[Unavailable], tuple[str, int]]:
        return (type(self), (self.service, self.retry_after))
