"""worker.claims on its own: which rows a claim takes and what it writes.

Read back from the database (``stored``, ``events``: tests/worker/conftest.py)
on SQLite and PostgreSQL, as a user of the message's status would see them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event, insert, text, update
from sqlalchemy.orm import Session

from models.db import make_engine, make_sessionmaker
from models.ledger import assign_accounts
from models.status import CampaignStatus, MessageStatus
from models.tables import Campaign, Message
from tests.worker.conftest import seed_campaign_rows
from worker.claims import claim, expire_overdue, held_back, release, renew_lease

S = MessageStatus
C = CampaignStatus
NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
LEASE = 120.0
TOKEN = "claim-a"

Stored = Callable[[str], dict[str, Any]]
Events = Callable[[str], list[dict[str, Any]]]


def at(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


def take(session: Session, ids: list[str], **options: Any) -> list[str]:
    """Claim as a worker does (and commit, as its caller does); the ids taken."""
    options.setdefault("token", TOKEN)
    claimed = claim(session, ids, now=NOW, lease=LEASE, **options)
    session.commit()
    return [c.id for c in claimed]


# --- which rows are due ---------------------------------------------------------

# (row fields, campaign status or None) -> claimed?
DUE: list[tuple[str, dict[str, Any], CampaignStatus | None, bool]] = [
    ("queued, nothing else", {}, None, True),
    ("send_at passed", {"send_at": at(-1)}, None, True),
    ("send_at now", {"send_at": NOW}, None, True),
    ("send_at ahead: never early", {"send_at": at(1)}, None, False),
    ("retry_at passed", {"retry_at": at(-1)}, None, True),
    ("retry_at now", {"retry_at": NOW}, None, True),
    ("retry_at ahead: the backoff is honoured", {"retry_at": at(1)}, None, False),
    ("expires ahead", {"expires_at": at(1)}, None, True),
    ("expires now", {"expires_at": NOW}, None, False),
    ("expired", {"expires_at": at(-1)}, None, False),
    ("scheduled", {"status": S.SCHEDULED}, None, False),
    ("already sending", {"status": S.SENDING}, None, False),
    ("sent", {"status": S.SENT}, None, False),
    ("unknown: only a resend takes it", {"status": S.UNKNOWN}, None, False),
    ("cancelled", {"status": S.CANCELLED}, None, False),
    ("campaign running", {}, C.RUNNING, True),
    ("campaign paused", {}, C.PAUSED, False),
    ("campaign cancelled", {}, C.CANCELLED, False),
    ("campaign finished", {}, C.FINISHED, False),
    ("campaign still a draft", {}, C.DRAFT, False),
]


@pytest.mark.parametrize(
    ("fields", "campaign", "claimed"),
    [pytest.param(f, c, ok, id=name) for name, f, c, ok in DUE],
)
def test_a_claim_takes_only_due_rows(
    session: Session,
    make_message: Callable[..., Message],
    make_campaign: Callable[..., Campaign],
    stored: Stored,
    events: Events,
    fields: dict[str, Any],
    campaign: CampaignStatus | None,
    claimed: bool,
) -> None:
    fields = {"status": S.QUEUED, **fields}
    if campaign is not None:
        fields["campaign_id"] = make_campaign(status=campaign).id
    message = make_message(**fields)
    assert take(session, [message.id]) == ([message.id] if claimed else [])
    row = stored(message.id)
    assert row["status"] == (S.SENDING if claimed else fields["status"])
    assert row["attempts"] == (1 if claimed else 0)
    assert len(events(message.id)) == (1 if claimed else 0)


def test_a_claim_counts_the_attempt_takes_a_lease_and_records_an_event(
    session: Session, make_message: Callable[..., Message], stored: Stored, events: Events
) -> None:
    message = make_message(
        status=S.QUEUED,
        attempts=2,
        parts_sent=1,
        text="x" * 200,
        sender="SHOP",
        kind="otp",
        flash=True,
        stop_list=False,
        expires_at=at(600),
    )
    [claimed] = claim(session, [message.id], now=NOW, lease=LEASE, token=TOKEN)
    session.commit()
    assert claimed.id == message.id
    assert (claimed.to, claimed.text, claimed.sender, claimed.kind) == (
        message.to,
        "x" * 200,
        "SHOP",
        "otp",
    )
    assert (claimed.provider, claimed.segments, claimed.flash, claimed.stop_list) == (
        "panel",
        2,
        True,
        False,
    )
    assert (claimed.attempts, claimed.parts_sent, claimed.expires_at) == (3, 1, at(600))
    assert claimed.campaign_id is None
    row = stored(message.id)
    assert row["status"] == S.SENDING
    assert row["attempts"] == 3
    assert row["lease_until"] == at(LEASE)
    assert row["lease_token"] == TOKEN
    assert row["updated_at"] == NOW
    assert events(message.id) == [
        {
            "status": S.SENDING,
            "source": "worker",
            "applied": True,
            "provider_code": None,
            "detail": None,
            "created_at": NOW,
        }
    ]


def test_a_second_claim_of_the_same_ids_gets_nothing(
    session: Session, make_message: Callable[..., Message], stored: Stored, events: Events
) -> None:
    ids = [make_message(status=S.QUEUED).id for _ in range(3)]
    assert sorted(take(session, ids)) == sorted(ids)
    assert take(session, ids, token="claim-b") == []
    for mid in ids:
        assert stored(mid)["attempts"] == 1
        assert stored(mid)["lease_token"] == TOKEN
        assert len(events(mid)) == 1


def test_a_claim_takes_only_the_ids_it_was_given(
    session: Session, make_message: Callable[..., Message], stored: Stored
) -> None:
    mine, other = make_message(status=S.QUEUED), make_message(status=S.QUEUED)
    assert take(session, [mine.id, "no-such-id"]) == [mine.id]
    assert stored(other.id)["status"] == S.QUEUED
    assert take(session, []) == []


# --- the one resend of an unknown outcome -------------------------------------------

# (row fields, campaign status or None) -> claimed by a resend?
RESEND: list[tuple[str, dict[str, Any], CampaignStatus | None, bool]] = [
    ("unknown, never resent", {}, None, True),
    ("already resent once", {"unknown_resends": 1}, None, False),
    ("expired", {"expires_at": at(-1)}, None, False),
    ("campaign finished (its unknowns still count)", {}, C.FINISHED, True),
    ("campaign running", {}, C.RUNNING, True),
    ("campaign paused by an operator", {}, C.PAUSED, False),
    ("campaign cancelled by an operator", {}, C.CANCELLED, False),
    ("queued: not a resend", {"status": S.QUEUED}, None, False),
    ("sent", {"status": S.SENT}, None, False),
]


@pytest.mark.parametrize(
    ("fields", "campaign", "claimed"),
    [pytest.param(f, c, ok, id=name) for name, f, c, ok in RESEND],
)
def test_a_resend_claims_an_unknown_row_at_most_once(
    session: Session,
    make_message: Callable[..., Message],
    make_campaign: Callable[..., Campaign],
    stored: Stored,
    fields: dict[str, Any],
    campaign: CampaignStatus | None,
    claimed: bool,
) -> None:
    fields = {"status": S.UNKNOWN, "attempts": 1, **fields}
    if campaign is not None:
        fields["campaign_id"] = make_campaign(status=campaign).id
    message = make_message(**fields)
    assert take(session, [message.id], resend_unknown=True) == ([message.id] if claimed else [])
    row = stored(message.id)
    if claimed:
        assert (row["status"], row["attempts"], row["unknown_resends"]) == (S.SENDING, 2, 1)
        assert row["lease_token"] == TOKEN
    else:
        assert (row["status"], row["attempts"]) == (fields["status"], 1)


def test_an_unknown_row_is_resent_once_even_if_it_turns_unknown_again(
    session: Session, make_message: Callable[..., Message], events: Events
) -> None:
    message = make_message(status=S.UNKNOWN, attempts=1)
    assert take(session, [message.id], resend_unknown=True) == [message.id]
    session.execute(update(Message).where(Message.id == message.id).values(status=S.UNKNOWN))
    session.commit()
    assert take(session, [message.id], resend_unknown=True, token="claim-b") == []
    assert [e["status"] for e in events(message.id)] == [S.SENDING]


# --- expiring, releasing, renewing ---------------------------------------------------


def test_expire_overdue_ends_queued_and_scheduled_rows_past_their_validity(
    session: Session, make_message: Callable[..., Message], stored: Stored, events: Events
) -> None:
    queued = make_message(status=S.QUEUED, expires_at=at(-1))
    scheduled = make_message(status=S.SCHEDULED, expires_at=NOW)
    fresh = make_message(status=S.QUEUED, expires_at=at(1))
    forever = make_message(status=S.QUEUED)
    sending = make_message(status=S.SENDING, expires_at=at(-1))  # the sweeper's, not ours
    ids = [queued.id, scheduled.id, fresh.id, forever.id, sending.id]
    assert sorted(expire_overdue(session, ids, now=NOW)) == sorted([queued.id, scheduled.id])
    session.commit()
    for mid in (queued.id, scheduled.id):
        row = stored(mid)
        assert (row["status"], row["finished_at"], row["updated_at"]) == (S.EXPIRED, NOW, NOW)
        [event] = events(mid)
        assert (event["status"], event["source"], event["applied"]) == (S.EXPIRED, "worker", True)
        assert event["detail"] == "validity passed before it could be sent"
    for mid, status in ((fresh.id, S.QUEUED), (forever.id, S.QUEUED), (sending.id, S.SENDING)):
        assert (stored(mid)["status"], stored(mid)["finished_at"]) == (status, None)
        assert events(mid) == []
    assert expire_overdue(session, [], now=NOW) == []


def test_release_gives_the_attempt_back_and_sets_retry_at(
    session: Session, make_message: Callable[..., Message], stored: Stored, events: Events
) -> None:
    message = make_message(status=S.QUEUED, attempts=2)
    take(session, [message.id])
    later = at(5)
    assert release(session, [message.id], now=NOW, retry_at=later, token=TOKEN) == [message.id]
    session.commit()
    row = stored(message.id)
    assert row["status"] == S.QUEUED
    assert row["attempts"] == 2  # a release is not an attempt
    assert row["retry_at"] == later
    assert (row["lease_until"], row["lease_token"]) == (None, None)
    assert [(e["status"], e["applied"], e["detail"]) for e in events(message.id)] == [
        (S.SENDING, True, None),
        (S.QUEUED, True, "released unsent: waiting for throttle tokens"),
    ]
    # Not due before retry_at; due at it.
    assert take(session, [message.id]) == []
    assert claim(session, [message.id], now=later, lease=LEASE, token=TOKEN)


def test_release_touches_only_rows_of_our_claim(
    session: Session, make_message: Callable[..., Message], stored: Stored, events: Events
) -> None:
    theirs = make_message(status=S.QUEUED)
    take(session, [theirs.id], token="claim-b")
    queued = make_message(status=S.QUEUED)
    released = release(session, [theirs.id, queued.id], now=NOW, retry_at=at(5), token=TOKEN)
    session.commit()
    assert released == []
    assert (stored(theirs.id)["status"], stored(theirs.id)["attempts"]) == (S.SENDING, 1)
    assert stored(theirs.id)["lease_token"] == "claim-b"
    assert (stored(queued.id)["status"], stored(queued.id)["retry_at"]) == (S.QUEUED, None)
    assert [e["status"] for e in events(theirs.id)] == [S.SENDING]
    assert release(session, [], now=NOW, retry_at=at(5), token=TOKEN) == []


def test_renew_lease_extends_only_rows_still_ours(
    session: Session, make_message: Callable[..., Message], stored: Stored
) -> None:
    kept, taken, delivered = (make_message(status=S.QUEUED) for _ in range(3))
    take(session, [kept.id, taken.id, delivered.id])
    # The sweeper took one (lease ran out, another claim has it now); a
    # delivery report moved another on.
    session.execute(update(Message).where(Message.id == taken.id).values(lease_token="claim-b"))
    session.execute(update(Message).where(Message.id == delivered.id).values(status=S.DELIVERED))
    session.commit()
    ids = [kept.id, taken.id, delivered.id]
    assert renew_lease(session, ids, now=at(100), lease=LEASE, token=TOKEN) == {kept.id}
    session.commit()
    assert stored(kept.id)["lease_until"] == at(100 + LEASE)
    assert stored(taken.id)["lease_until"] == at(LEASE)
    assert renew_lease(session, [], now=NOW, lease=LEASE, token=TOKEN) == set()


# --- holding accounts and routes ---------------------------------------------------------

# (route, provider) -> held? with panel holding and the route 'down' fully down.
HOLDS: list[tuple[str | None, str, bool]] = [
    (None, "panel", True),  # unrouted: its provider decides, as before routes
    (None, "brand", False),
    ("down", "brand", True),  # every account of its route down, whatever its provider
    ("up", "panel", False),  # its route has another account: claimed, re-routed
    ("removed", "panel", True),  # a route this worker does not know: by its provider
    ("removed", "brand", False),
]


def test_a_claim_holds_unrouted_rows_by_provider_and_routed_rows_by_route(
    session: Session, make_message: Callable[..., Message]
) -> None:
    messages = [make_message(status=S.QUEUED, route=r, provider=p) for r, p, _ in HOLDS]
    ids = [m.id for m in messages]
    holds: dict[str, Any] = {
        "routes": ["down", "up"],
        "hold_routes": ["down"],
    }
    taken = take(session, ids, hold_providers=["panel"], **holds)
    expected_held = {m.id for m, (_, _, held) in zip(messages, HOLDS, strict=True) if held}
    assert set(taken) == set(ids) - expected_held
    left = held_back(session, ids, ["panel"], **holds)
    assert {id_ for id_, _kind, _provider in left} == expected_held


def test_assign_accounts_names_the_account_of_rows_still_in_our_claim(
    session: Session, make_message: Callable[..., Message], stored: Stored, events: Events
) -> None:
    ours, theirs = (make_message(status=S.QUEUED, route="r") for _ in range(2))
    take(session, [ours.id])
    take(session, [theirs.id], token="claim-b")
    before = len(events(ours.id))
    assign_accounts(session, {ours.id: "brand", theirs.id: "brand"}, token=TOKEN)
    session.commit()
    assert (stored(ours.id)["provider"], stored(theirs.id)["provider"]) == ("brand", "panel")
    assert len(events(ours.id)) == before  # not a move: no event


# --- the plan: a batch's rows are found by id ------------------------------------


@pytest.mark.integration
def test_a_claim_finds_its_rows_by_id_whatever_the_statistics_say(postgres_url: str) -> None:
    """Statistics taken before a campaign was written say ``queued`` is rare, so a
    status index looks selective; the batch's statements must still look their
    rows up by primary key, not read every queued row (``bench/million.py``:
    0.35 s per claim with a million queued, the campaign O(N²))."""
    engine = make_engine(postgres_url)
    statements: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("UPDATE MESSAGES", "SELECT MESSAGES.ID")):
            statements.append((statement, params))

    with engine.begin() as conn:
        conn.execute(
            insert(Campaign),
            [
                {"id": c, "name": c, "text": "Sale", "provider": "brand", "status": status}
                for c, status in (("old", C.FINISHED), ("new", C.RUNNING))
            ],
        )
        seed_campaign_rows(conn, prefix="h", campaign="old", status=S.DELIVERED, rows=20_000)
    with engine.connect() as conn:
        conn.execute(text("ANALYZE messages"))
        conn.commit()
    with engine.begin() as conn:
        seed_campaign_rows(conn, prefix="n", campaign="new", status=S.QUEUED, rows=20_000)
    ids = [f"n{i:07d}" for i in range(10_001, 10_501)]
    event.listen(engine, "before_cursor_execute", keep)
    try:
        with make_sessionmaker(engine)() as s:
            expire_overdue(s, ids, now=NOW)
            assert len(claim(s, ids, now=NOW, lease=LEASE, token=TOKEN)) == 500
            held_back(s, ids, ["brand"])
            s.rollback()
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    assert len(statements) == 3
    with engine.connect() as conn:
        for statement, params in statements:
            plan = "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + statement, params))
            assert "pk_messages" in plan and "ix_messages_status" not in plan, plan
        conn.rollback()
    engine.dispose()
