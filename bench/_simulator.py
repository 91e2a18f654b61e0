"""``smsq simulator`` for the chaos suite: the same server, and its stats kept at exit.

The provider-outage scenario stops the simulator's process for real (the
workers see connection refused), so what it counted until then would die
with it. This runs exactly what ``smsq simulator`` runs and, once uvicorn has
finished its graceful shutdown (SIGTERM: no new connections, the requests in
flight answered), writes the final ``/_stats`` JSON to ``--stats-file``.
(uvicorn raises the signal again once it has shut down; the handler installed
here turns that into an exception, so the stats are written before exit.)

    python bench/_simulator.py --port 8025 --latency-ms 20 --stats-file out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from providers.simulator import Simulator, serve
from smsq.core.settings import Settings
from smsq.simulator_setup import simulator_config


class Stopped(Exception):
    """SIGTERM or SIGINT, raised again by uvicorn after its graceful shutdown."""


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise Stopped


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--stats-file", type=Path, required=True)
    args = ap.parse_args()
    sim = Simulator(simulator_config(Settings(), latency_ms=args.latency_ms))
    signal.signal(signal.SIGTERM, _stopped)
    signal.signal(signal.SIGINT, _stopped)
    try:
        with contextlib.suppress(Stopped):
            serve(sim, port=args.port)
    finally:
        args.stats_file.write_text(json.dumps(sim.stats()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
