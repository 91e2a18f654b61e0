"""What every vendor's delivery-report parser shares: its refusal and field readers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any


class ReportError(ValueError):
    """A report we cannot use; the message names the field."""


def refuse_nul(value: Any, where: str = "") -> None:
    """A NUL character is no part of any report, and PostgreSQL cannot store it."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ReportError(f"{where or 'report'}: contains a NUL character")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            refuse_nul(key, where or "a field name")
            refuse_nul(item, str(key)[:40].replace("\x00", ""))
    elif isinstance(value, list):
        for item in value:
            refuse_nul(item, where)


def parse_time(value: str | None, fmt: str) -> dt.datetime | None:
    """A time in ``fmt``, read as UTC; None when absent or unreadable (never refused)."""
    if not value:
        return None
    try:
        return dt.datetime.strptime(value.strip(), fmt).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def parse_iso(value: Any) -> dt.datetime | None:
    """An ISO 8601 time (``Z`` allowed; UTC without an offset); None when unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
