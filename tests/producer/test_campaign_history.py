"""A campaign message's first status, which ingestion does not store, is implied."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from models.status import EventSource
from producer.campaign_history import implied_first_event

NOW = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.UTC)


def msg(**fields: object) -> SimpleNamespace:
    values: dict[str, object] = {
        "campaign_id": "c",
        "status": "queued",
        "was_scheduled": False,
        "created_at": NOW,
    }
    values.update(fields)
    return SimpleNamespace(**values)


@pytest.mark.parametrize(
    ("message", "first", "implied"),
    [
        (msg(), None, "queued"),  # untouched yet
        (msg(status="suppressed"), None, "suppressed"),
        (msg(status="scheduled"), None, "scheduled"),
        (msg(status="sent"), ("sending", "worker"), "queued"),
        (msg(status="sending"), ("queued", "worker"), "scheduled"),  # a scheduled start
        (msg(status="cancelled"), ("cancelled", "operator"), "queued"),
        (
            msg(status="cancelled", was_scheduled=True),
            ("cancelled", "operator"),
            "scheduled",
        ),
        (msg(status="expired", was_scheduled=True), ("expired", "worker"), "scheduled"),
        (msg(status="expired"), ("expired", "worker"), "queued"),
        (msg(), ("queued", "producer"), None),  # stored before this rule
        (msg(campaign_id=None), None, None),  # a single message has its own event
    ],
)
def test_the_first_status_of_a_campaign_message_is_implied(
    message: SimpleNamespace, first: tuple[str, str] | None, implied: str | None
) -> None:
    event = implied_first_event(message, first)
    if implied is None:
        assert event is None
        return
    assert event is not None
    assert (event.status, event.source, event.applied, event.created_at) == (
        implied,
        EventSource.PRODUCER,
        True,
        NOW,
    )
    assert event.detail == ("on the stop list" if implied == "suppressed" else None)
