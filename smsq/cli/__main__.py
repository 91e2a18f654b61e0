"""``python -m smsq.cli``: the same as the ``smsq`` command."""

from smsq.cli import main

main()
