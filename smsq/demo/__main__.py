"""``python -m smsq.demo``: the demo command (as ``smsq demo``)."""

from smsq.demo.command import main

main()
