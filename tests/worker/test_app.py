"""The Celery app's beat schedule and task routes (worker.app)."""

from __future__ import annotations

from smsq.core.names import QUEUE_CAMPAIGN, TASK_PRUNE
from smsq.core.settings import Settings
from worker.app import make_celery


def test_the_beat_prunes_only_when_a_retention_is_set() -> None:
    assert "prune" not in make_celery(Settings()).conf.beat_schedule

    app = make_celery(Settings(prune_after_days=90, prune_interval=600))

    entry = app.conf.beat_schedule["prune"]
    assert (entry["task"], entry["schedule"]) == (TASK_PRUNE, 600)
    assert app.conf.task_routes[TASK_PRUNE] == {"queue": QUEUE_CAMPAIGN}
