"""Prometheus metrics of the HTTP API (the process's default registry)."""

from __future__ import annotations

from prometheus_client import Counter

DLR_UNMATCHED = Counter(
    "smsq_dlr_unmatched",  # exported as smsq_dlr_unmatched_total
    "Delivery reports answered 2xx that matched no message",
    ["adapter"],
)
