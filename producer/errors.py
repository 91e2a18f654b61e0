"""What the producer raises when a request cannot be accepted.

::

    ValueError
     └── InvalidField        one input is wrong; .field names it, .reason says why

A web app maps :class:`InvalidField` to a 422 (the HTTP API does) or shows
``reason`` next to the form field named ``field``. Nothing is written to the
database when it is raised. The reason never repeats the value: a phone number
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
