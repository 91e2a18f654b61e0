"""Fixtures for adapter tests: a simulator behind an httpx client, and the
demo provider accounts pointed at it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from providers.accounts import BrandAccount, PanelSmsAccount
from providers.simulator import SimConfig, Simulator, mock_transport

PANEL_URL = "http://sim.test/sendMtSms.php"
BRAND_URL = "http://sim.test/brand/send"


@pytest.fixture
def sim() -> Simulator:
    """A simulator whose clock stands still, so per-second limits are exact."""
    now = time.time()
    return Simulator(SimConfig(seed=7, dlr_delay=0), clock=lambda: now)


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=mock_transport(sim, sleep=False)) as c:
        yield c


@pytest.fixture
def panel_account() -> Callable[..., PanelSmsAccount]:
    def factory(**fields: Any) -> PanelSmsAccount:
        values: dict[str, Any] = {
            "adapter": "panelsms",
            "name": "panel",
            "url": PANEL_URL,
            "user": "demo@example.com",
            "api_key": "demo-panel-key",
            "sender": "SMSQ",
        }
        values.update(fields)
        return PanelSmsAccount(**values)

    return factory


@pytest.fixture
def brand_account() -> Callable[..., BrandAccount]:
    def factory(**fields: Any) -> BrandAccount:
        values: dict[str, Any] = {
            "adapter": "brand",
            "name": "brand",
            "url": BRAND_URL,
            "key": "demo-brand-key",
            "brand_id": "SMSQ",
        }
        values.update(fields)
        return BrandAccount(**values)

    return factory
