"""Checking a send request, one field at a time.

Pure functions, no database and no I/O, cheap enough for campaign ingestion
to run per row. Each raises :class:`producer.errors.InvalidField` naming the
field, with a reason a person can act on.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from models.sms_text import SmsText, TextError, analyze
from models.status import MessageKind
from producer.errors import InvalidField
from producer.numbers import normalize_number
from smsq.core import netguard
from smsq.core.settings import Settings

__all__ = [
    "check_callback_url",
    "check_idempotency",
    "check_kind",
    "check_sender",
    "check_text",
    "normalize_number",
    "parse_send_at",
    "resolve_provider",
    "resolve_validity",
    "storage_problem",
    "text_reason",
]

# The vendor form of a send time: local time in the configured zone, minutes.
_VENDOR_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}")
_ZONE_EXAMPLE = "e.g. 2026-02-01T23:30:00+01:00"

SENDER_MAX = 16  # as providers.accounts.ProviderAccount.sender
CALLBACK_URL_MAX = 2000
IDEMPOTENCY_KEY_MAX = 255  # messages.idempotency_key
CLIENT_ID_MAX = 64  # messages.client_id


def check_text(text: str, *, max_parts: int) -> SmsText:
    """Encoding and parts of ``text``; InvalidField("text", ...) if unsendable.

    The reason is :func:`models.sms_text.analyze`'s message: it names the
    length, the encoding and the characters that forced UCS-2.
    """
    if not isinstance(text, str):
        raise InvalidField("text", f"must be a string, not {type(text).__name__}")
    problem = storage_problem(text)
    if problem is not None:
        raise InvalidField("text", problem)
    try:
        return analyze(text, max_parts=max_parts)
    except TextError as exc:
        raise InvalidField(exc.field, _without_field(str(exc), exc.field)) from exc


def storage_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored (PostgreSQL text is UTF-8 without NUL)."""
    if "\x00" in text:
        return "contains a NUL character (U+0000)"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate (was it decoded with the wrong encoding?)"
    return None


def text_reason(exc: TextError) -> str:
    """The reason of a TextError without its ``text:`` prefix (for row reports)."""
    return _without_field(str(exc), exc.field)


def _without_field(message: str, field: str) -> str:
    prefix = f"{field}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


# Bounds that keep every computed time a real date (year 9999 + a validity
# overflowed: a 500 found by the fuzz) and are far beyond any SMS use.
MAX_SCHEDULE_AHEAD = dt.timedelta(days=365)
MAX_VALIDITY = 30 * 86_400


def parse_send_at(
    value: str | dt.datetime | None, *, now: dt.datetime, tz: str
) -> dt.datetime | None:
    """When to send, as an aware UTC datetime; None: now.

    Accepted: ISO 8601 with a zone (``2026-02-01T23:30:00+01:00``, ``...Z``),
    the vendor form ``2026-02-01 23:30`` read in the zone ``tz``, or an aware
    datetime. A time without a zone is refused rather than guessed. A vendor
    time that does not exist in ``tz`` (skipped by a clock change) is refused;
    one that exists twice takes the first. It must be after ``now``.
    An empty string means "not scheduled", as an empty form field would.
    """
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        when = value
        if when.utcoffset() is None:
            raise InvalidField("send_at", f"needs a time zone, {_ZONE_EXAMPLE}")
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if _VENDOR_TIME.fullmatch(text):
            when = _vendor_time(text, tz)
        else:
            try:
                when = dt.datetime.fromisoformat(text)
            except ValueError:
                raise InvalidField(
                    "send_at",
                    f"not a date and time: use ISO 8601 with a zone ({_ZONE_EXAMPLE}) "
                    f"or 'YYYY-MM-DD HH:MM' in {tz}",
                ) from None
            if when.utcoffset() is None:
                raise InvalidField("send_at", f"needs a time zone, {_ZONE_EXAMPLE}")
    else:
        raise InvalidField("send_at", f"must be a string or a datetime, not {type(value).__name__}")
    if when <= now:
        shown_now = now.astimezone(when.tzinfo)
        raise InvalidField(
            "send_at",
            f"must be in the future (it is {when.isoformat()} and now is {shown_now.isoformat()})",
        )
    if when - now > MAX_SCHEDULE_AHEAD:
        raise InvalidField(
            "send_at", f"at most {MAX_SCHEDULE_AHEAD.days} days ahead, not {when.isoformat()}"
        )
    return when.astimezone(dt.UTC)


def _vendor_time(text: str, tz: str) -> dt.datetime:
    zone = _zone(tz)
    try:
        naive = dt.datetime.strptime(text, "%Y-%m-%d %H:%M")
    except ValueError:
        raise InvalidField("send_at", f"not a valid date and time: {text!r}") from None
    when = naive.replace(tzinfo=zone)
    # A wall time in a spring-forward gap does not survive the round trip.
    if when.astimezone(dt.UTC).astimezone(zone).replace(tzinfo=None) != naive:
        raise InvalidField("send_at", f"{text} does not exist in {tz} (the clocks change)")
    return when


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        # A configuration error, not the caller's: say which setting.
        raise ValueError(f"SMSQ_TIMEZONE: unknown time zone {tz!r}") from None


def resolve_provider(name: str | None, settings: Settings) -> str:
    """The ``provider=`` asked for: an account or a route by name, or the
    configured default account (:mod:`producer.routing` says where it sends)."""
    if name is None:
        return settings.default_provider_name
    if name not in settings.providers and name not in settings.routes:
        known = ", ".join(sorted(settings.providers))
        routes = f"; routes: {', '.join(settings.routes)}" if settings.routes else ""
        raise InvalidField("provider", f"no provider named {name!r} (known: {known}{routes})")
    return name


def check_kind(kind: str) -> MessageKind:
    """The kind of a single message: ``otp`` or ``transactional``."""
    if kind == MessageKind.CAMPAIGN:
        raise InvalidField("kind", "campaign messages are sent with submit_campaign()")
    if kind not in (MessageKind.OTP, MessageKind.TRANSACTIONAL):
        raise InvalidField("kind", f"must be 'otp' or 'transactional', not {kind!r}")
    return MessageKind(kind)


def resolve_validity(validity: int | None, kind: MessageKind, settings: Settings) -> int:
    """Seconds a message may wait before it expires unsent (default by kind)."""
    if validity is None:
        return settings.otp_validity if kind is MessageKind.OTP else settings.default_validity
    if isinstance(validity, bool) or not isinstance(validity, int):
        raise InvalidField("validity", "must be a whole number of seconds")
    if validity <= 0:
        raise InvalidField("validity", f"must be a positive number of seconds, not {validity}")
    if validity > MAX_VALIDITY:
        raise InvalidField("validity", f"at most {MAX_VALIDITY} seconds (30 days), not {validity}")
    return validity


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_one_line(field: str, value: str) -> str:
    """A name, a reason, a URL: no control characters (PostgreSQL refuses NUL)."""
    found = _CONTROL.search(value)
    if found:
        raise InvalidField(
            field, f"must not contain control characters (found U+{ord(found.group()):04X})"
        )
    return value


def check_sender(sender: str | None) -> str | None:
    """A sender name or number, or None for the provider account's default."""
    if sender is None:
        return None
    if not isinstance(sender, str) or not sender.strip():
        raise InvalidField("sender", "must be a non-empty string")
    if len(sender) > SENDER_MAX:
        raise InvalidField("sender", f"at most {SENDER_MAX} characters, got {len(sender)}")
    return check_one_line("sender", sender)


def check_callback_url(
    url: str | None, settings: Settings, *, signed_by_key: bool = False
) -> str | None:
    """A status-webhook URL smsq may call (``smsq.core.netguard``), or None.

    Webhooks are signed: with the API key's secret (``signed_by_key``, the
    HTTP API) or else ``SMSQ_WEBHOOK_SECRET``; a URL with no secret to sign
    for is refused now rather than failing at every delivery.
    """
    if url is None:
        return None
    if not isinstance(url, str) or len(url) > CALLBACK_URL_MAX:
        raise InvalidField(
            "callback_url", f"must be a URL of at most {CALLBACK_URL_MAX} characters"
        )
    check_one_line("callback_url", url)
    try:
        netguard.check_callback_url(
            url,
            allow_http=settings.webhook_allow_http,
            allow_private=settings.webhook_allow_private,
        )
    except ValueError as exc:
        raise InvalidField("callback_url", str(exc)) from None
    if not signed_by_key and settings.webhook_secret is None:
        raise InvalidField(
            "callback_url", "needs SMSQ_WEBHOOK_SECRET to sign the webhooks of the Python API"
        )
    return url


def check_idempotency(client_id: str, key: str | None) -> None:
    if not isinstance(client_id, str) or len(client_id) > CLIENT_ID_MAX:
        raise InvalidField("client_id", f"must be a string of at most {CLIENT_ID_MAX} characters")
    if key is None:
        return
    if not isinstance(key, str) or not key or len(key) > IDEMPOTENCY_KEY_MAX:
        raise InvalidField(
            "idempotency_key",
            f"must be a non-empty string of at most {IDEMPOTENCY_KEY_MAX} characters",
        )
    check_one_line("idempotency_key", key)
