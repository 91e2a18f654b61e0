"""API keys: made once, stored hashed, found by prefix, revocable (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.tables import ApiKey
from producer.errors import InvalidField
from producer.keys import KeyState, create_key, list_keys, revoke_key, verify_key


def test_a_new_key_has_the_documented_shape_and_is_stored_only_hashed(session: Session) -> None:
    row, key = create_key(session, "shop", rate_limit=5, webhook_url="https://hooks.example.com")

    match = re.fullmatch(r"smsq_([a-z0-9]{8})_([A-Za-z0-9_-]{43})", key)
    assert match is not None
    session.expire_all()
    stored = session.scalars(select(ApiKey)).one()
    assert stored.prefix == match.group(1) == row.prefix
    assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in (stored.key_hash, stored.prefix, stored.name, stored.webhook_secret)
    assert (stored.name, stored.rate_limit, stored.webhook_url) == (
        "shop",
        5,
        "https://hooks.example.com",
    )
    assert stored.webhook_secret.startswith("whsec_")
    assert len(base64.b64decode(stored.webhook_secret.removeprefix("whsec_"))) == 24


def test_two_keys_differ(session: Session) -> None:
    (a, key_a), (b, key_b) = create_key(session, "a"), create_key(session, "b")
    assert key_a != key_b and a.prefix != b.prefix and a.webhook_secret != b.webhook_secret


@pytest.mark.parametrize(("name", "rate"), [("", None), ("  ", None), ("x" * 101, None), ("ok", 0)])
def test_bad_input_names_the_field(session: Session, name: str, rate: int | None) -> None:
    with pytest.raises(InvalidField) as err:
        create_key(session, name, rate_limit=rate)
    assert err.value.field == ("rate_limit" if rate is not None else "name")
    assert session.scalars(select(ApiKey)).first() is None


def test_verify_accepts_the_key(session: Session) -> None:
    row, key = create_key(session, "shop")
    check = verify_key(session, key)
    assert check.state is KeyState.OK and check.ok
    assert check.key is not None and check.key.id == row.id


def test_verify_refuses_what_is_not_the_key(session: Session) -> None:
    row, key = create_key(session, "shop")
    wrong_secret = key[:-1] + ("A" if key[-1] != "A" else "B")
    other_prefix = f"smsq_{'0' * 8 if row.prefix != '0' * 8 else '1' * 8}_{key.split('_', 2)[2]}"
    for presented in [wrong_secret, other_prefix, "", "smsq", "Bearer " + key, key + " ", "nope"]:
        check = verify_key(session, presented)
        assert (check.state, check.key) == (KeyState.UNKNOWN, None), presented


def test_revoked_key_is_told_apart_from_an_unknown_one(session: Session) -> None:
    row, key = create_key(session, "shop")
    revoked = revoke_key(session, row.prefix)
    assert revoked is not None and revoked.revoked_at is not None
    assert verify_key(session, key).state is KeyState.REVOKED


def test_revoke_is_idempotent_by_prefix_or_id(session: Session) -> None:
    row, _ = create_key(session, "shop")
    first = revoke_key(session, row.id)
    assert first is not None
    when = first.revoked_at
    again = revoke_key(session, row.prefix)
    assert again is not None and again.revoked_at == when
    assert revoke_key(session, "no-such-key") is None


def test_list_keys_includes_revoked_ones_oldest_first(session: Session) -> None:
    a, _ = create_key(session, "a")
    b, _ = create_key(session, "b")
    revoke_key(session, a.id)
    listed = list_keys(session)
    assert [k.name for k in listed] == ["a", "b"]
    assert listed[0].revoked_at is not None and listed[1].revoked_at is None
    assert b.id == listed[1].id
