"""Both adapters over real HTTP to the simulator served by uvicorn in a thread,
through the pooled client smsq uses in workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from models.ids import new_id
from providers.accounts import BrandAccount, PanelSmsAccount
from providers.base import Accepted, Outbound, Recipient, Rejected
from providers.brand.adapter import BrandAdapter
from providers.errors import OutcomeUnknown, Throttled
from providers.http import make_async_client
from providers.panelsms.adapter import PanelSmsAdapter
from providers.simulator import SimConfig, Simulator, SimulatorServer, run_in_thread

pytestmark = pytest.mark.integration


@pytest.fixture
def server() -> Iterator[SimulatorServer]:
    sim = Simulator(SimConfig(seed=3, brand_callback_url=None))
    with run_in_thread(sim, send_reports=False) as srv:
        yield srv


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
@pytest.mark.parametrize("response_type", ["json", "xml", "plain"])
async def test_panelsms_over_http(
    server: SimulatorServer,
    panel_account: Callable[..., PanelSmsAccount],
    transport: str,
    response_type: str,
) -> None:
    adapter = PanelSmsAdapter(
        panel_account(url=f"{server.url}/sendMtSms.php", response_type=response_type),
        public_url="http://127.0.0.1:8000",
    )
    rs = [Recipient(new_id(), f"+49170{i:07d}") for i in range(20)]
    async with make_async_client(transport=transport) as client:  # type: ignore[arg-type]
        outcomes = await adapter.send(Outbound(text="á" * 100, recipients=rs), client)
    assert all(isinstance(o, Accepted) for o in outcomes)
    stats = server.sim.stats()
    assert stats["accepted"] == 40  # 100 UCS-2 characters are 2 parts of <= 67
    assert stats["duplicates"] == []


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_brand_over_http(
    server: SimulatorServer, brand_account: Callable[..., BrandAccount], transport: str
) -> None:
    adapter = BrandAdapter(brand_account(url=f"{server.url}/brand/send", max_numbers=100))
    rs = [Recipient(new_id(), f"+49170{i:07d}") for i in range(250)]
    async with make_async_client(transport=transport) as client:  # type: ignore[arg-type]
        outcomes = await adapter.send(Outbound(text="sale", recipients=rs), client)
    assert all(isinstance(o, Accepted) for o in outcomes)
    assert server.sim.stats()["accepted"] == 250


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_faults_over_http(
    server: SimulatorServer, panel_account: Callable[..., PanelSmsAccount], transport: str
) -> None:
    adapter = PanelSmsAdapter(
        panel_account(url=f"{server.url}/sendMtSms.php", timeout=0.5), public_url="http://x"
    )
    server.sim.config.patch({"hang_ratio": 1.0})
    async with make_async_client(transport=transport) as client:  # type: ignore[arg-type]
        [o] = await adapter.send(
            Outbound(text="hi", recipients=[Recipient(new_id(), "+4917012345678")]), client
        )
        assert isinstance(o, Rejected) and isinstance(o.error, OutcomeUnknown)
        server.sim.config.patch({"hang_ratio": 0.0, "rate_limit": 1})
        rs = [Recipient(new_id(), "+4917012345678") for _ in range(5)]
        outcomes = await adapter.send(Outbound(text="hi", recipients=rs), client)
    assert any(isinstance(o, Rejected) and isinstance(o.error, Throttled) for o in outcomes)
