"""The ledger: every write of a message's status — the move, its columns, its event.

``models.status`` says which moves are allowed; this package performs them.
Workers, the delivery-report receiver, the sweeper, the scheduler, campaign
control and fleet operations all call it, and nothing else in smsq writes
``messages.status``, ``sent_at``, ``finished_at`` or a ``message_events`` row
(a guard in ``tests/conftest.py`` hooks every statement of the test suite
to hold that).

- :mod:`.moves` — the rule of what a move sets (:func:`moved_columns`,
  :func:`first_columns`) and the writers: one row (:func:`apply_status`), new
  rows (:func:`insert_new_messages`; campaign rows without events:
  :func:`insert_campaign_rows`, :func:`copy_campaign_rows`,
  :func:`settle_first_status`), every row
  matching a condition (:func:`move_where`, :func:`move_campaign_messages`;
  :func:`status_among` for a statement that names its rows by id),
  per-row outcomes guarded by a claim's lease (:func:`write_claimed_moves`)
  and an operator's re-queue (:func:`requeue_by_operator`); the account a
  claimed routed row goes out on (:func:`assign_accounts`, not a move).
- :mod:`.reports` — delivery reports applied to their messages, set-based,
  with the orphans that overtook the worker (``record_reports``,
  ``replay_orphans``); it decides each move with :func:`moved_columns`.
"""

from models.ledger.moves import (
    RowMove,
    apply_status,
    assign_accounts,
    copy_campaign_rows,
    first_columns,
    insert_campaign_rows,
    insert_new_messages,
    move_campaign_messages,
    move_where,
    moved_columns,
    requeue_by_operator,
    settle_first_status,
    status_among,
    write_claimed_moves,
)

__all__ = [
    "RowMove",
    "apply_status",
    "assign_accounts",
    "copy_campaign_rows",
    "first_columns",
    "insert_campaign_rows",
    "insert_new_messages",
    "move_campaign_messages",
    "move_where",
    "moved_columns",
    "requeue_by_operator",
    "settle_first_status",
    "status_among",
    "write_claimed_moves",
]
