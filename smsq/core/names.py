"""Names shared by the producer, the workers and the operators' tools.

Like ``smsq.core.settings``, a leaf every package may import. The producer enqueues
by task *name* (``send_task``), so a web app that only enqueues needs none of
the worker's code; the names below are the contract between the two.
"""

from __future__ import annotations

from models.status import MessageKind

# --- Celery queues -----------------------------------------------------------
# Separate queues, not broker priorities: Redis "priorities" in Celery are
# approximate, and an OTP must never wait behind a million-recipient campaign.
QUEUE_OTP = "otp"
QUEUE_TRANSACTIONAL = "transactional"
QUEUE_CAMPAIGN = "campaign"
# Status webhooks to customers: a slow customer endpoint must not hold up sends.
QUEUE_WEBHOOKS = "webhooks"
QUEUES = (QUEUE_OTP, QUEUE_TRANSACTIONAL, QUEUE_CAMPAIGN, QUEUE_WEBHOOKS)

QUEUE_FOR_KIND: dict[str, str] = {
    MessageKind.OTP: QUEUE_OTP,
    MessageKind.TRANSACTIONAL: QUEUE_TRANSACTIONAL,
    MessageKind.CAMPAIGN: QUEUE_CAMPAIGN,
}

# --- Celery task names -------------------------------------------------------
TASK_SEND = "smsq.send_messages"  # args: [message ids]
TASK_START_CAMPAIGN = "smsq.start_campaign"  # args: campaign id
TASK_PROMOTE = "smsq.promote_scheduled"  # beat
TASK_SWEEP = "smsq.sweep"  # beat
TASK_RECOVER_OWNERS = "smsq.recover_owners"  # beat: dead workers' rows, in seconds
TASK_PRUNE = "smsq.prune"  # beat: retention (SMSQ_PRUNE_AFTER_DAYS)
TASK_DISPATCH_WEBHOOKS = "smsq.dispatch_webhooks"  # beat: status events -> deliveries
TASK_DELIVER_WEBHOOK = "smsq.deliver_webhook"  # args: delivery id

# --- Redis keys --------------------------------------------------------------
# Every key smsq writes starts with this prefix, so an operator can list or
# delete smsq's state without touching the broker's own keys.
REDIS_PREFIX = "smsq:"


def bucket_key(provider: str) -> str:
    """The token bucket of one provider account (a hash: tokens, ts, factor)."""
    return f"{REDIS_PREFIX}bucket:{provider}"


def paused_key(provider: str) -> str:
    """Present while an operator has paused a provider account (``smsq fleet pause``):
    its bucket grants no tokens, so workers leave its messages ``queued``."""
    return f"{REDIS_PREFIX}paused:{provider}"


def api_rate_key(client_id: str, window: int) -> str:
    """Requests of one API key in one one-second window (a counter that expires)."""
    return f"{REDIS_PREFIX}api-rate:{client_id}:{window}"


# A marker smsq keeps in the broker's Redis. When it is missing, Redis lost its
# data (restart without persistence, FLUSHALL) and with it every queued task:
# the sweeper then re-enqueues all due work from the database.
BROKER_MARKER_KEY = f"{REDIS_PREFIX}broker-marker"


def health_key(provider: str) -> str:
    """The circuit breaker of one provider account (a hash: state, since, counters;
    ``worker.provider_health``)."""
    return f"{REDIS_PREFIX}health:{provider}"


def probe_key(provider: str) -> str:
    """Present while one worker of the fleet may send an open breaker's probe;
    expires after the probe interval (``worker.provider_health``)."""
    return f"{REDIS_PREFIX}health-probe:{provider}"


# Changes of the fleet an operator may need to know about later: a provider
# account going down or coming back (its circuit breaker, appended by
# ``worker/provider_health.lua`` in the same atomic call that changes it) and an
# operator's pause or resume. A capped stream (``worker.fleet_events``).
FLEET_EVENTS_KEY = f"{REDIS_PREFIX}fleet-events"


# --- owners of claims (worker.owners) ----------------------------------------
# A claim's lease token names the worker process that owns it and the registry
# epoch it was made in (``<owner>:<epoch>:<nonce>``), so a sweep can tell a dead
# owner's rows from a live one's within seconds instead of a lease period.

# The registry's epoch: a random id set (NX) by the first process that finds it
# missing. A new epoch means Redis lost its data; the absence of an owner key is
# trusted only for claims made in the current epoch.
OWNERS_EPOCH_KEY = f"{REDIS_PREFIX}owners-epoch"


def owner_key(owner: str) -> str:
    """Present while a worker process is alive: refreshed every quarter of
    ``SMSQ_OWNER_TTL`` by its heartbeat thread, gone within the TTL after it died."""
    return f"{REDIS_PREFIX}owner:{owner}"


def on_wire_key(token: str) -> str:
    """The ids of one claim that may have reached the provider (a set, written
    before each request goes out; deleted once the claim's outcomes are stored)."""
    return f"{REDIS_PREFIX}on-wire:{token}"


# Delivery reports the receiver accepted, waiting to be applied to the database
# (a stream: ``producer.report_stream``). The receiver answers the provider once
# its report is here, so a database outage loses no report; the API's report
# applier (``producer.report_applier``) reads it as one consumer group, so any
# number of API processes share the work and an entry is deleted once applied.
DLR_STREAM_KEY = f"{REDIS_PREFIX}dlr-stream"
DLR_STREAM_GROUP = "report-appliers"
