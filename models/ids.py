"""Message and campaign ids.

A message id is also the provider ``transactionId`` (panelsms) so a delivery
report can always be matched and a resend carries the same id. We use UUIDv7
(RFC 9562): time-ordered, so new rows land at the end of the primary-key index
instead of all over it, which matters at millions of rows. Python 3.11 has no
``uuid.uuid7``; the layout is simple enough to build here.
"""

from __future__ import annotations

import os
import time
import uuid


def new_id() -> str:
    """A UUIDv7 as its 36-character canonical string."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 68) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF  # rand_b, 62 bits
    return str(uuid.UUID(int=value))
