"""Standard Webhooks signatures: the spec's published test vector and round trips."""

from __future__ import annotations

import pytest

from worker.webhooks.signing import sign, verify

# From the Standard Webhooks specification's reference libraries.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_specs_test_vector() -> None:
    assert sign(SECRET, MSG_ID, TIMESTAMP, BODY) == EXPECTED


def test_verify_accepts_our_own_signature() -> None:
    signature = sign(SECRET, MSG_ID, TIMESTAMP, BODY)
    assert verify(SECRET, MSG_ID, TIMESTAMP, BODY, signature, now=TIMESTAMP + 10)


def test_one_matching_signature_among_several_is_enough() -> None:
    header = f"v1,Zm9vYmFy {EXPECTED}"
    assert verify(SECRET, MSG_ID, TIMESTAMP, BODY, header)


@pytest.mark.parametrize(
    ("msg_id", "timestamp", "body"),
    [
        (MSG_ID, TIMESTAMP, b'{"test": 2432232315}'),
        ("msg_other", TIMESTAMP, BODY),
        (MSG_ID, TIMESTAMP + 1, BODY),
    ],
    ids=["tampered body", "other id", "other timestamp"],
)
def test_anything_changed_fails(msg_id: str, timestamp: int, body: bytes) -> None:
    assert not verify(SECRET, msg_id, timestamp, body, EXPECTED)


def test_other_secret_fails() -> None:
    assert not verify("whsec_" + "QUJD" * 8, MSG_ID, TIMESTAMP, BODY, EXPECTED)


def test_old_timestamp_is_refused_as_a_replay() -> None:
    assert not verify(SECRET, MSG_ID, TIMESTAMP, BODY, EXPECTED, now=TIMESTAMP + 301)


def test_unreadable_secret_is_an_error() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        sign("whsec_not base64!", MSG_ID, TIMESTAMP, BODY)
