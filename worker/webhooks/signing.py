"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; the
signature is ``v1,`` + base64 of its HMAC-SHA256. A secret reads
``whsec_<base64>`` and the HMAC key is the *decoded* base64 part, so a
receiver using any Standard Webhooks library verifies our requests as they
are. The ``webhook-signature`` header may carry several space-separated
signatures (during a secret rotation); one match is enough.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
# A receiver refuses timestamps further than this from its clock (replays).
DEFAULT_TOLERANCE = 300


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ``ValueError`` if unreadable."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("webhook secret is not whsec_<base64>") from None
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one request: ``v1,<base64>``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def verify(
    secret: str,
    msg_id: str,
    timestamp: int,
    body: bytes,
    signatures: str,
    *,
    now: int | None = None,
    tolerance: int = DEFAULT_TOLERANCE,
) -> bool:
    """True if one of the space-separated ``signatures`` signs this request.

    With ``now`` (Unix seconds) a timestamp more than ``tolerance`` seconds
    away is refused too, as a receiver should, so a captured request cannot be
    replayed later.
    """
    if now is not None and abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, msg_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures.split())
