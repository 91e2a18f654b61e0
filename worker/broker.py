"""What the sweeper asks of the broker's Redis: is a queue empty, was the
broker's data lost. Celery's Redis transport keeps a queue as a list named
after it, plus one list per priority step (``name\\x06\\x16<step>``)."""

from __future__ import annotations

import redis

from smsq.core.names import BROKER_MARKER_KEY

_PRIORITY_SEPARATOR = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)  # step 0 is the list named after the queue


def queue_depth(client: redis.Redis, queue: str) -> int:
    keys = [queue, *(f"{queue}{_PRIORITY_SEPARATOR}{step}" for step in _PRIORITY_STEPS)]
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.llen(key)
        return sum(int(n) for n in pipe.execute())


def broker_data_lost(client: redis.Redis) -> bool:
    """True (once) when the marker is gone; sets it again for the next check."""
    created = client.set(BROKER_MARKER_KEY, "1", nx=True)
    return bool(created)
