"""Fault injection, stats and runtime configuration of the simulator."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from providers.simulator import SimConfig, Simulator, mock_transport

T0 = 1_705_314_645.0  # 2024-01-15 10:30:45 UTC
PANEL = {
    "user": "demo@example.com",
    "apiKey": "demo-panel-key",
    "to": "+1222333444",
    "message": "Hello",
    "responseType": "json",
}
BRAND = {"key": "demo-brand-key", "brandID": "SMSQ", "numbers": "4917012345678", "text": "Hi"}


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(**config: Any) -> tuple[Simulator, httpx.Client, FakeClock]:
    clock = FakeClock()
    sim = Simulator(SimConfig(**config), clock=clock)
    return sim, httpx.Client(transport=mock_transport(sim), base_url="http://sim"), clock


def panel(client: httpx.Client, **overrides: str) -> httpx.Response:
    return client.get("/sendMtSms.php", params={**PANEL, **overrides})


def panel_code(response: httpx.Response) -> int | None:
    inner: dict[str, Any] = response.json()["response"]
    return inner.get("code")


# --- rate limit --------------------------------------------------------------


def test_panelsms_rate_limit_within_one_second_then_ok_in_the_next() -> None:
    sim, client, clock = make(rate_limit=2)
    assert [panel_code(panel(client)) for _ in range(2)] == [None, None]
    clock.now += 0.9  # same clock second
    throttled = panel(client)
    assert throttled.status_code == 200 and panel_code(throttled) == 7
    assert throttled.headers["retry-after"] == "1"
    clock.now += 0.2  # next second
    assert panel_code(panel(client)) is None
    stats = sim.stats()
    assert stats["rejected"]["by_code"] == {"7": 1}
    assert stats["max_per_second"] == 2
    assert stats["per_second"] == {str(int(T0)): 2, str(int(T0) + 1): 1}
    # The refused request cost the sender a token too, in the second it came.
    assert stats["refused_per_second"] == {str(int(T0)): 1}


def test_brand_rate_limit_counts_numbers() -> None:
    sim, client, clock = make(rate_limit=3)
    two = {**BRAND, "numbers": "4917012345678,4917012345679"}
    assert client.post("/brand/send", data=two).status_code == 200
    throttled = client.post("/brand/send", data=two)
    assert throttled.status_code == 429
    assert throttled.json()["code"] == 7 and throttled.headers["retry-after"] == "1"
    clock.now += 1
    assert client.post("/brand/send", data=two).status_code == 200
    assert sim.stats()["accepted"] == 4


# --- injected faults ---------------------------------------------------------


def test_queue_full_ratio_one_gives_code_6_with_retry_after() -> None:
    _, client, _ = make(queue_full_ratio=1.0, retry_after=5)
    response = panel(client)
    assert panel_code(response) == 6 and response.headers["retry-after"] == "5"
    assert panel(client, responseType="plain").text == "ERROR_6"


@pytest.mark.parametrize("route", ["/sendMtSms.php", "/brand/send"])
def test_5xx_ratio_gives_http_500(route: str) -> None:
    sim, client, _ = make(error_5xx_ratio=1.0)
    params = PANEL if route == "/sendMtSms.php" else BRAND
    assert client.post(route, data=params).status_code == 500
    assert sim.stats()["injected"]["http_5xx"] == 1


def test_hang_is_a_read_timeout_through_the_mock_transport() -> None:
    sim, client, _ = make(hang_ratio=1.0)
    with pytest.raises(httpx.ReadTimeout):
        panel(client)
    with pytest.raises(httpx.ReadTimeout):
        client.post("/brand/send", data=BRAND)
    assert sim.stats()["injected"]["hangs"] == 2
    assert sim.stats()["accepted"] == 0


async def test_hang_with_an_async_client() -> None:
    sim = Simulator(SimConfig(hang_ratio=1.0))
    async with httpx.AsyncClient(transport=mock_transport(sim), base_url="http://sim") as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/sendMtSms.php", params=PANEL)


@pytest.mark.parametrize("route", ["/sendMtSms.php", "/brand/send"])
def test_outage_window_answers_bare_503(route: str) -> None:
    sim, client, clock = make(outages=[(T0 + 10, T0 + 20)])
    params = PANEL if route == "/sendMtSms.php" else BRAND
    assert client.post(route, data=params).status_code == 200
    clock.now = T0 + 10
    down = client.post(route, data=params)
    assert down.status_code == 503 and not down.text.startswith(("{", "<", "ERROR"))
    clock.now = T0 + 20
    assert client.post(route, data=params).status_code == 200
    assert sim.stats()["injected"]["outages"] == 1


def test_credentials_are_checked_before_faults() -> None:
    _, client, _ = make(outages=[(0, T0 + 1)], error_5xx_ratio=1.0)
    assert panel_code(panel(client, apiKey="wrong")) == 2
    assert client.post("/brand/send", data={**BRAND, "key": "x"}).status_code == 401


def test_seeded_faults_are_reproducible() -> None:
    def outcomes() -> list[int]:
        _, client, _ = make(error_5xx_ratio=0.5, seed=42)
        return [panel(client).status_code for _ in range(20)]

    first = outcomes()
    assert first == outcomes() and set(first) == {200, 500}


def test_latency_is_slept_by_the_transport_unless_disabled() -> None:
    sim = Simulator(SimConfig(latency_ms=60))
    with httpx.Client(transport=mock_transport(sim), base_url="http://sim") as client:
        started = time.perf_counter()
        panel(client)
        assert time.perf_counter() - started >= 0.05
    with httpx.Client(transport=mock_transport(sim, sleep=False), base_url="http://s") as fast:
        started = time.perf_counter()
        panel(fast)
        assert time.perf_counter() - started < 0.05


async def test_latency_is_awaited_with_an_async_client() -> None:
    sim = Simulator(SimConfig(latency_ms=60))
    async with httpx.AsyncClient(transport=mock_transport(sim), base_url="http://sim") as client:
        started = time.perf_counter()
        await client.get("/sendMtSms.php", params=PANEL)
        assert time.perf_counter() - started >= 0.05


# --- stats -------------------------------------------------------------------


def test_stats_count_duplicates_per_transaction_and_part() -> None:
    sim, client, _ = make()
    for seq in (1, 2, 2):  # part 2 of message m-1 sent twice: a duplicate SMS
        panel(client, transactionId="m-1", udh=f"050003AB02{seq:02X}")
    panel(client, transactionId="m-2")
    client.post("/brand/send", data={**BRAND, "numbers": "4917012345678,4917012345678"})
    stats = sim.stats()
    assert stats["per_transaction"] == {"m-1": 3, "m-2": 1}
    assert stats["duplicates"] == [["m-1", 2]]
    # By destination, a long text counts once (its first part), and a resend
    # under another transactionId counts too: m-1 and m-2 both went to the
    # same number.
    assert stats["per_number"] == {"1222333444": 2, "4917012345678": 2}
    assert stats["accepted"] == 6
    assert stats["requests"] == {
        "total": 5,
        "by_route": {"/sendMtSms.php": 4, "/brand/send": 1},
    }


@pytest.mark.parametrize(("method", "path"), [("POST", "/_stats/reset"), ("DELETE", "/_stats")])
def test_stats_endpoint_and_reset(method: str, path: str) -> None:
    sim, client, _ = make(error_5xx_ratio=1.0)
    panel(client)
    served = client.get("/_stats").json()
    assert served == sim.stats()
    assert served["injected"]["http_5xx"] == 1 and served["requests"]["total"] == 1
    cleared = client.request(method, path).json()
    assert cleared["requests"]["total"] == 0 and cleared["injected"]["http_5xx"] == 0
    assert cleared["per_second"] == {} and not sim.last_requests


# --- runtime configuration ---------------------------------------------------


def test_config_can_be_read_and_patched_at_runtime() -> None:
    sim, client, _ = make()
    assert client.get("/_config").json()["rate_limit"] is None
    patched = client.post("/_config", json={"rate_limit": 1, "outages": [[0, 1]]})
    assert patched.status_code == 200 and patched.json()["changed"] == ["outages", "rate_limit"]
    assert sim.config.rate_limit == 1 and sim.config.outages == [(0.0, 1.0)]
    panel(client)
    assert panel_code(panel(client)) == 7


@pytest.mark.parametrize(
    "patch",
    [{"rate_limit": 0}, {"hang_ratio": 2}, {"nonsense": 1}, {"latency_ms": "slow"}, [1]],
)
def test_bad_config_patch_changes_nothing(patch: Any) -> None:
    sim, client, _ = make()
    before = sim.config.to_dict()
    # A valid change beside the bad one is not applied either: all or nothing.
    body = {"queue_full_ratio": 1.0, **patch} if isinstance(patch, dict) else patch
    response = client.post("/_config", json=body)
    assert response.status_code == 400 and response.json()["error"]
    assert sim.config.to_dict() == before
