"""``smsq demo``: the main job of smsq, on the embedded default, in one command.

In this process (:mod:`smsq.demo.stack`: simulator, API, workers, promoter;
SQLite and an in-process broker and Redis unless the environment points at
real ones) it:

- submits a campaign (10,000 recipients) on the route ``bulk`` (the panel
  account, the brand account when panel is down), panel's bucket at 100/s,
  raised to 200/s once a fifth of it is sent, while the simulator answers
  some requests with code 6 (queue full) and code 7 (throttled, above its
  own rate limit): the retries and the adaptive throttle at work;
- once 35 % is sent, stops the panelsms simulator's listener for 10 s
  (:mod:`~smsq.demo.outage`: connections refused): the campaign fails over
  to brand and comes back when panel's breaker probe finds it up;
- sends 50 OTPs through the brand adapter while the campaign runs,
  on their own queue and worker, and measures how long each took;
- schedules one message a few seconds ahead and measures how late it left;
- shows live progress, then a summary, also written to ``demo-report.json``.

It exits 0 when every message was handed to a provider, none twice (counted
by number at both simulators), 1 otherwise.

The package: :mod:`~smsq.demo.command` (the command and its flags),
:mod:`~smsq.demo.options`, :mod:`~smsq.demo.scenario` (what runs, the live
view and the summary), :mod:`~smsq.demo.report` (the figures, read from the
database), :mod:`~smsq.demo.outage` (the provider going away) and
:mod:`~smsq.demo.stack` (the whole stack in one process).
"""

from smsq.demo.command import command, main, run_demo
from smsq.demo.options import DemoOptions

__all__ = ["DemoOptions", "command", "main", "run_demo"]
