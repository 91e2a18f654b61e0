"""What ``smsq demo`` runs: the sizes and rates of the scenario (its command's flags)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoOptions:
    recipients: int = 10_000
    otps: int = 50
    schedule_in: float = 10.0
    """Seconds ahead of the scheduled message."""
    rate: int = 100
    """The campaign provider's bucket at the start, messages per second."""
    raised_rate: int = 200
    raise_at: float = 0.2
    """Share of the campaign sent when the rate is raised."""
    queue_full_ratio: float = 0.02
    """Share of requests the simulator answers with code 6."""
    provider_rate_limit: int = 190
    """The simulator answers code 7 above this many messages per second."""
    failover: bool = True
    """Stop the panelsms simulator's listener partway (connection refused), so
    the campaign's route fails over to the brand account and comes back."""
    outage_at: float = 0.35
    """Share of the campaign sent when the panelsms simulator goes away."""
    outage: float = 10.0
    """Seconds it refuses connections."""
    report: Path = Path("demo-report.json")
    timeout: float = 180.0
    """Give up (exit 1) after this many seconds."""
