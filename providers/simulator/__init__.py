"""The provider simulator: both provider APIs, faithfully, with faults on demand.

A product feature, not a test helper: tests, ``smsq demo`` and the benchmarks
all talk to it. The core (:class:`Simulator`) is a pure request -> response
function; :func:`create_app` serves it over HTTP (ASGI), :func:`serve` and
:func:`run_in_thread` run that app with uvicorn, and :func:`mock_transport`
plugs it into an httpx client without any server.

Modules: ``config`` (what it accepts, which faults), ``core`` (routing, faults,
state), ``panelsms`` and ``brand`` (which code answers which request; the wire
itself is each vendor's ``providers/<vendor>/protocol.py``, shared with the
adapters), ``stats``, ``wire`` (request/response/report data), ``mock``,
``dlr`` (sending delivery reports), ``app`` and ``server``.
"""

from providers.simulator.app import create_app
from providers.simulator.config import SimConfig
from providers.simulator.core import Simulator
from providers.simulator.dlr import DlrDispatcher
from providers.simulator.mock import mock_transport
from providers.simulator.server import ServerThread, SimulatorServer, run_in_thread, serve
from providers.simulator.wire import Report, SimRequest, SimResponse

__all__ = [
    "DlrDispatcher",
    "Report",
    "ServerThread",
    "SimConfig",
    "SimRequest",
    "SimResponse",
    "Simulator",
    "SimulatorServer",
    "create_app",
    "mock_transport",
    "run_in_thread",
    "serve",
]
