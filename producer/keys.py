"""API keys of the HTTP API: make, list, revoke, verify.

A key reads ``smsq_<prefix>_<secret>``. ``prefix`` (8 characters,
``[a-z0-9]``) is stored in clear and finds the row; ``secret`` is
``secrets.token_urlsafe(32)``. Only the SHA-256 of the *whole* key is
stored, compared with :func:`hmac.compare_digest`. A fast hash is enough:
the secret is 32 random bytes, there is nothing to brute-force, and a slow
hash would cost every request.

The key is shown once by :func:`create_key` and cannot be recovered; a lost
key is revoked and replaced. Revoking is idempotent and keeps the row, so a
revoked key answers 403 (not 401) and its messages keep their client id.

The prefix is the only part of a key that may appear in logs.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.tables import ApiKey, utcnow
from producer.errors import InvalidField

KEY_SCHEME = "smsq"
PREFIX_LENGTH = 8
PREFIX_ALPHABET = string.ascii_lowercase + string.digits
NAME_MAX = 100  # api_keys.name
WEBHOOK_SECRET_PREFIX = "whsec_"


class KeyState(enum.StrEnum):
    OK = "ok"
    UNKNOWN = "unknown"  # no such key (or a malformed one): 401
    REVOKED = "revoked"  # a real key, revoked: 403


@dataclass(frozen=True)
class KeyCheck:
    """What :func:`verify_key` found; ``key`` is set only when ``state`` is OK."""

    state: KeyState
    key: ApiKey | None = None

    @property
    def ok(self) -> bool:
        return self.state is KeyState.OK


def hash_key(key: str) -> str:
    """The stored form of a key (also the cache key of the HTTP auth)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def split_key(presented: str) -> tuple[str, str] | None:
    """``(prefix, secret)`` of a well-formed key, else None."""
    scheme, sep, rest = presented.partition("_")
    if scheme != KEY_SCHEME or not sep:
        return None
    prefix, sep, secret = rest.partition("_")
    if (
        not sep
        or len(prefix) != PREFIX_LENGTH
        or any(c not in PREFIX_ALPHABET for c in prefix)
        or not secret
    ):
        return None
    return prefix, secret


def key_prefix(presented: str) -> str | None:
    """The loggable part of a presented key, if it has the key's shape."""
    parts = split_key(presented)
    return parts[0] if parts else None


def new_webhook_secret() -> str:
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def create_key(
    session: Session,
    name: str,
    *,
    rate_limit: int | None = None,
    webhook_url: str | None = None,
) -> tuple[ApiKey, str]:
    """Make and commit a key; returns the row and the key (shown once)."""
    name = name.strip() if isinstance(name, str) else name
    if not isinstance(name, str) or not name or len(name) > NAME_MAX:
        raise InvalidField("name", f"must be a non-empty string of at most {NAME_MAX} characters")
    if rate_limit is not None and (not isinstance(rate_limit, int) or rate_limit < 1):
        raise InvalidField("rate_limit", "must be a whole number of requests per second, >= 1")
    for _ in range(5):  # a prefix collision is ~1 in 36**8 per existing key
        prefix = "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
        key = f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
        row = ApiKey(
            name=name,
            prefix=prefix,
            key_hash=hash_key(key),
            rate_limit=rate_limit,
            webhook_url=webhook_url,
            webhook_secret=new_webhook_secret(),
            created_at=utcnow(),
        )
        session.add(row)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            continue
        return row, key
    raise RuntimeError("could not find a free key prefix")  # pragma: no cover


def list_keys(session: Session) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def find_key(session: Session, key_id_or_prefix: str) -> ApiKey | None:
    """The key with this id or prefix (what ``smsq keys`` accepts)."""
    return session.scalars(
        select(ApiKey).where(or_(ApiKey.id == key_id_or_prefix, ApiKey.prefix == key_id_or_prefix))
    ).first()


def revoke_key(session: Session, key_id_or_prefix: str) -> ApiKey | None:
    """Revoke by id or prefix (idempotent; the first revocation time is kept)."""
    row = find_key(session, key_id_or_prefix)
    if row is None:
        return None
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.commit()
    return row


def verify_key(session: Session, presented: str) -> KeyCheck:
    """Check a presented key: found by prefix, compared by hash in constant time."""
    parts = split_key(presented) if isinstance(presented, str) else None
    if parts is None:
        return KeyCheck(KeyState.UNKNOWN)
    row = session.scalars(select(ApiKey).where(ApiKey.prefix == parts[0])).first()
    given = hash_key(presented)
    # Compare even without a row, so a wrong prefix and a wrong secret take
    # the same time (the prefix is not secret, but there is no reason to tell).
    expected = row.key_hash if row is not None else "0" * 64
    if not hmac.compare_digest(given, expected) or row is None:
        return KeyCheck(KeyState.UNKNOWN)
    if row.revoked_at is not None:
        return KeyCheck(KeyState.REVOKED, row)
    return KeyCheck(KeyState.OK, row)
