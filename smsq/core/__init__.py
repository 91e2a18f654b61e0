"""smsq's ground floor: what every layer may import.

Settings (``settings``), the names producer and worker agree on (queues,
tasks, Redis keys: ``names``), logging (``logs``), which URLs smsq may call
(``netguard``) and the task publisher (``publisher``). Nothing here imports
the shell beside it (``smsq.cli``, ``smsq.demo``, ``smsq.api_app``...), so
``models``/``providers``/``producer``/``worker`` can use it without pulling in
the command line or the demo. Kept empty of imports itself.
"""
