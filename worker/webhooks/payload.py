"""The body of a status webhook: what a customer learns about a message.

Compact JSON, built once when the outbox row is made; those exact bytes are
stored, signed and sent on every attempt, so a retry is byte-identical and the
receiver can deduplicate on ``webhook-id``. The message text is never part of
it: it may be a one-time code, and a webhook endpoint is outside our control.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

EVENT_TYPE = "message.status"


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One applied status event and the message facts a customer may see."""

    event_id: int
    status: str
    at: dt.datetime
    message_id: str
    to: str
    provider: str
    route: str | None  # the route of the providers file; None: sent on provider only
    provider_message_id: str | None
    error_code: int | None
    error_detail: str | None
    campaign_id: str | None
    segments: int


def build_payload(change: StatusChange, *, now: dt.datetime) -> str:
    """The JSON body for ``change``; ``now`` is when the webhook was made."""
    body: dict[str, Any] = {
        "type": EVENT_TYPE,
        "timestamp": _iso(now),
        "data": {
            "id": change.message_id,
            "status": change.status,
            "to": change.to,
            "provider": change.provider,
            "route": change.route,
            "provider_message_id": change.provider_message_id,
            "error_code": change.error_code,
            "error_detail": change.error_detail,
            "campaign_id": change.campaign_id,
            "segments": change.segments,
            "event_id": change.event_id,
            "at": _iso(change.at),
        },
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
