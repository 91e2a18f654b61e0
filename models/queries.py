"""Read-side questions asked of the database in more than one place."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.tables import Message


def campaign_counts(session: Session, campaign_id: str) -> dict[str, int]:
    """How many of a campaign's messages are in each status (one query)."""
    rows = session.execute(
        select(Message.status, func.count())
        .where(Message.campaign_id == campaign_id)
        .group_by(Message.status)
    ).all()
    return {status: count for status, count in rows}
