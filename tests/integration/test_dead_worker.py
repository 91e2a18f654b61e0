"""A worker process killed with rows claimed: the rows it never sent go out
again within seconds (worker.owners, worker.recovery), none twice.

Default lease (120 s), unknown-resend (300 s) and sweep interval (15 s): only
the recovery of a dead owner's rows can send them within the test's time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from models.tables import Message, MessageEvent
from worker.recovery import REQUEUED_DETAIL
from worker.throttle import TokenBucket

pytestmark = pytest.mark.integration

OTP_NUMBER = "+4917099999999"
OTP_AT_BRAND = OTP_NUMBER.lstrip("+")  # how the brand API writes numbers
TARGET = 30.0  # seconds from the kill until the OTP reaches the provider (issue 10)


def test_a_killed_workers_unsent_rows_are_sent_within_seconds_and_none_twice(
    live: Callable[..., Any],
) -> None:
    # The campaign trickles out at 5/s, so the batch a child claimed is half
    # sent when it dies. The OTP's account has one token per 4 s and none left:
    # its worker claims it and waits for the token, and dies waiting.
    stack = live(
        panel_rate=5,
        panel_burst=5,
        brand_rate=0.25,
        brand_burst=1,
        # The defaults the fixture shortens: only the recovery beat (every 5 s)
        # can bring the rows back in time.
        env={"SMSQ_UNKNOWN_RESEND_AFTER": "300", "SMSQ_SWEEP_INTERVAL": "15"},
    )
    worker = stack.worker("otp,transactional,campaign", concurrency=2)
    stack.beat()
    producer = stack.producer()
    receipt = producer.submit_campaign("kill", [f"+4915123{i:06d}" for i in range(40)], "Once")
    stack.wait_until(lambda: stack.sim.stats()["accepted"] >= 5, 20, "the campaign under way")
    TokenBucket(stack.redis, "brand", rate=0.25, burst=1).acquire(1)
    otp = producer.send(OTP_NUMBER, "Your code is 123456", kind="otp", provider="brand")
    stack.wait_until(stack.all_in("sending", 1, id=otp.id), 5, "the OTP claimed")

    children = subprocess.run(["pgrep", "-P", str(worker.pid)], capture_output=True, text=True)
    pids = [int(p) for p in children.stdout.split()]
    assert len(pids) == 2, "prefork children"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    on_wire_at_kill = stack.sim.stats()["accepted"]
    assert OTP_AT_BRAND not in stack.sim.stats()["per_number"]
    assert on_wire_at_kill < 40, "the campaign was still going"

    stack.wait_until(
        lambda: OTP_AT_BRAND in stack.sim.stats()["per_number"],
        TARGET,
        "the OTP at the provider",
    )
    otp_after = time.monotonic() - killed
    stack.wait_until(
        lambda: len(stack.sim.stats()["per_transaction"]) == 40, 30, "the campaign sent"
    )
    campaign_after = time.monotonic() - killed
    print(f"after the kill: OTP sent in {otp_after:.1f} s, campaign in {campaign_after:.1f} s")

    stats = stack.sim.stats()
    # per_number counts both vendors' sends by destination: each exactly once.
    assert stats["duplicates"] == [] and stats["per_number"][OTP_AT_BRAND] == 1
    assert sorted(stats["per_number"].values()) == [1] * 41
    assert sorted(stats["per_transaction"].values()) == [1] * 40
    with stack.sessions() as session:
        requeued = set(
            session.scalars(
                select(MessageEvent.message_id).where(MessageEvent.detail == REQUEUED_DETAIL)
            )
        )
        campaign = list(
            session.scalars(select(Message).where(Message.campaign_id == receipt.campaign_id))
        )
    # What the dead worker never sent went back to queued (not unknown), the OTP too.
    assert otp.id in requeued
    assert len(requeued & {m.id for m in campaign}) >= 40 - on_wire_at_kill - 5  # 5: in flight
    stack.wait_until(
        lambda: not {"queued", "sending", "failed"} & set(stack.counts()), 20, "rows settled"
    )
