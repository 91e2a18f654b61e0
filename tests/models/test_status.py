from __future__ import annotations

import pytest

from models.status import (
    FINAL_STATUSES,
    OPERATOR_REQUEUE_FROM,
    CampaignStatus,
    MessageStatus,
    campaign_can_move,
    can_move,
    is_final,
    sources_of,
)

S = MessageStatus


@pytest.mark.parametrize("final", sorted(FINAL_STATUSES))
def test_a_final_status_never_moves(final: MessageStatus) -> None:
    assert is_final(final)
    assert not any(can_move(final, to) for to in MessageStatus)


@pytest.mark.parametrize(
    ("current", "to"),
    [
        (S.ACCEPTED, S.QUEUED),
        (S.ACCEPTED, S.SCHEDULED),
        (S.ACCEPTED, S.SUPPRESSED),
        (S.SCHEDULED, S.QUEUED),
        (S.QUEUED, S.SENDING),
        (S.SENDING, S.SENT),
        (S.SENDING, S.QUEUED),  # retry on 6/7
        (S.SENDING, S.UNKNOWN),  # read timeout
        (S.SENDING, S.DELIVERED),  # a fast report overtakes the worker's write
        (S.SENT, S.DELIVERED),
        (S.SENT, S.UNDELIVERED),
        (S.SENT, S.EXPIRED),
        (S.UNKNOWN, S.DELIVERED),  # resolved by a report
        (S.UNKNOWN, S.SENDING),  # the one resend with the same transactionId
    ],
)
def test_allowed_moves(current: MessageStatus, to: MessageStatus) -> None:
    assert can_move(current, to)


@pytest.mark.parametrize(
    ("current", "to"),
    [
        (S.DELIVERED, S.SENT),  # a late 'sent' after 'delivered'
        (S.SENT, S.QUEUED),  # a sent message is never sent again
        (S.SENT, S.SENDING),
        (S.QUEUED, S.SENT),  # must be claimed first
        (S.SCHEDULED, S.SENDING),
        (S.ACCEPTED, S.SENDING),
    ],
)
def test_refused_moves(current: MessageStatus, to: MessageStatus) -> None:
    assert not can_move(current, to)


def test_sources_of_agrees_with_can_move() -> None:
    for to in MessageStatus:
        assert sources_of(to) == {src for src in MessageStatus if can_move(src, to)}


def test_campaign_moves() -> None:
    assert campaign_can_move(CampaignStatus.RUNNING, CampaignStatus.PAUSED)
    assert campaign_can_move(CampaignStatus.PAUSED, CampaignStatus.RUNNING)
    assert not campaign_can_move(CampaignStatus.CANCELLED, CampaignStatus.RUNNING)
    # Reopened only by an operator's re-queue (smsq fleet retry); never paused or cancelled.
    assert campaign_can_move(CampaignStatus.FINISHED, CampaignStatus.RUNNING)
    assert not campaign_can_move(CampaignStatus.FINISHED, CampaignStatus.CANCELLED)


def test_an_operator_requeue_is_no_move_of_the_machine() -> None:
    # A late worker write guarded by sources_of(QUEUED) must never revive a final row.
    for final in OPERATOR_REQUEUE_FROM:
        assert is_final(final)
        assert not can_move(final, MessageStatus.QUEUED)
