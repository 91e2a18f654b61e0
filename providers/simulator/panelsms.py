"""The simulated panelsms ``sendMtSms.php``: which code answers which request.

Pure functions over the request parameters; :mod:`.core` calls them in the
vendor's order (account, key, faults, then content) and keeps the state. The
wire itself (names, values, answers, report body) is
:mod:`providers.panelsms.protocol`, shared with the adapter and the drop-in.
Where the vendor text is silent the choices are the ones in
``shared/providers/README.md``; the rest are stated where they are made.
"""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass

from models.sms_text import PART_LIMIT, SINGLE_LIMIT, Encoding, gsm7_length, is_gsm7, ucs2_length
from providers.codes import Code, Rejection
from providers.panelsms.protocol import (
    BINARY_DCS,
    CONCAT_UDH_SIZES,
    DCS_VALUES,
    DESTINATION_RE,
    DIGITS_RE,
    HEX_UDH_RE,
    LATIN1_DCS,
    PATH,
    SENDER_RE,
    UCS2_DCS,
    Param,
    read_boolean,
    read_time,
)
from providers.simulator.config import SimConfig

ROUTE = PATH


@dataclass(frozen=True, slots=True)
class PanelSubmit:
    """One accepted part, as the simulator records it."""

    to: str
    message: str
    transaction_id: str | None
    seq: int  # part sequence from a concatenation UDH; 1 without one
    length: int  # in the units of the encoding: septets, UTF-16 units or Latin-1 chars
    confirmation: bool
    callback_url: str | None
    send_at: float | None  # scheduledDeliveryTime as a unix time


def authenticate(params: dict[str, str], config: SimConfig) -> None:
    """Code 1 for a missing, unknown or disabled user; 2 for a wrong apiKey."""
    user = params.get(Param.USER, "")
    expected = config.panelsms_users.get(user)
    if expected is None or user in config.disabled_users:
        raise Rejection(Code.ACCOUNT_DISABLED, f"user {user!r} is unknown or disabled")
    if not hmac.compare_digest(params.get(Param.API_KEY, "").encode(), expected.encode()):
        raise Rejection(Code.INVALID_API_KEY, "apiKey does not match the user")


def validate(params: dict[str, str], now: float, tz: dt.tzinfo) -> PanelSubmit:
    """Check the content of a request in the vendor's order; raise :class:`Rejection`."""
    sender = params.get(Param.SENDER_ID, "")
    if sender and not SENDER_RE.fullmatch(sender):
        raise Rejection(
            Code.INVALID_SOURCE, f"senderId {sender!r}: up to 11 letters/digits or 16 digits"
        )
    to = params.get(Param.TO, "")
    if not DESTINATION_RE.fullmatch(to):
        raise Rejection(
            Code.INVALID_DESTINATION, f"to {to!r}: '+' and 8-15 digits (URL-encode the '+')"
        )
    dcs = _dcs(params.get(Param.DCS, ""))
    seq, concatenated = _udh(params.get(Param.UDH, ""))
    message = params.get(Param.MESSAGE, "")
    if not message:
        raise Rejection(Code.INVALID_MESSAGE_DATA, "message is empty")
    if dcs in BINARY_DCS:
        raise Rejection(
            Code.NOT_SUPPORTED, "binary SMS (dcs 2/4) is not supported by the simulator"
        )
    encoding, length = _measure(message, dcs)
    limit = (PART_LIMIT if concatenated else SINGLE_LIMIT)[encoding]
    if length > limit:
        raise Rejection(Code.MESSAGE_TOO_LONG, f"{length} units, at most {limit} in this part")
    send_at = None
    if scheduled := params.get(Param.SCHEDULED_DELIVERY_TIME, ""):
        send_at = _when(scheduled, now, tz)
        if send_at is None or send_at <= now:
            raise Rejection(
                Code.INVALID_SCHEDULED_TIME,
                f"scheduledDeliveryTime {scheduled!r} is unreadable or past",
            )
    validity = params.get(Param.VALIDITY_PERIOD, "")
    if validity and _when(validity, now, tz) is None:
        raise Rejection(
            Code.INVALID_MESSAGE_DATA, f"validityPeriod {validity!r}: seconds or an ISO date-time"
        )
    confirmation = read_boolean(params.get(Param.CONFIRMATION, "false"))
    if confirmation is None:
        raise Rejection(Code.INVALID_MESSAGE_DATA, "confirmation must be true or false")
    return PanelSubmit(
        to=to,
        message=message,
        transaction_id=params.get(Param.TRANSACTION_ID) or None,
        seq=seq,
        length=length,
        confirmation=confirmation,
        callback_url=params.get(Param.CALLBACK_URL) or None,
        send_at=send_at,
    )


def _dcs(value: str) -> int:
    # Absent means the vendor's "0: Default", which must then be GSM-7 text.
    if not value:
        return 0
    if not DIGITS_RE.fullmatch(value) or int(value) not in DCS_VALUES:
        raise Rejection(Code.INVALID_DCS, f"dcs {value!r} is not one of 0, 1, 2, 3, 4, 8")
    return int(value)


def _udh(udh: str) -> tuple[int, bool]:
    """(part sequence, is a concatenation header); code 10 if malformed.

    Any other even-length hex header (the vendor's flash ``0100``) is passed
    through unread, as an SMSC does.
    """
    if not udh:
        return 1, False
    if not HEX_UDH_RE.fullmatch(udh):
        raise Rejection(Code.INVALID_UDH, f"udh {udh!r} is not an even-length hex string")
    size = CONCAT_UDH_SIZES.get(udh[:6])
    if size is None:
        return 1, False
    if len(udh) != size:
        raise Rejection(
            Code.INVALID_UDH, f"udh {udh!r}: a concatenation header has {size} hex digits"
        )
    total, seq = int(udh[-4:-2], 16), int(udh[-2:], 16)
    if total < 1 or not 1 <= seq <= total:
        raise Rejection(Code.INVALID_UDH, f"udh {udh!r}: part {seq} of {total}")
    return seq, True


def _measure(message: str, dcs: int) -> tuple[Encoding, int]:
    """The encoding whose limits apply and the length in its units.

    dcs 0 and 1 are GSM-7 (septets, extension characters two); dcs 8 is UCS-2
    (UTF-16 units). dcs 3, Latin-1, is counted in characters against the GSM-7
    limits: the vendor calls Latin-1 its default alphabet, with 160 characters.
    """
    if dcs == UCS2_DCS:
        return Encoding.UCS2, ucs2_length(message)
    if dcs == LATIN1_DCS:
        try:
            message.encode("latin-1")
        except UnicodeEncodeError:
            raise Rejection(Code.INVALID_MESSAGE_DATA, "text is not Latin-1; use dcs=8") from None
        return Encoding.GSM7, len(message)
    if not is_gsm7(message):
        raise Rejection(Code.INVALID_MESSAGE_DATA, "text is not GSM-7; use dcs=8")
    return Encoding.GSM7, gsm7_length(message)


def _when(value: str, now: float, tz: dt.tzinfo) -> float | None:
    """Relative seconds or an ISO date-time (local to ``tz`` without an offset)."""
    try:
        when = read_time(value, tz)
    except ValueError:
        return None
    return now + when if isinstance(when, int) else when.timestamp()
