"""Delivery reports, and the simulator served over real HTTP.

Reports go to a small Starlette receiver through ``httpx.ASGITransport``: what
the receiver got is what a user's endpoint would get.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from providers.simulator import DlrDispatcher, SimConfig, Simulator, mock_transport, run_in_thread

T0 = dt.datetime(2024, 1, 15, 10, 30, 45, tzinfo=dt.UTC).timestamp()
PANEL = {
    "user": "demo@example.com",
    "apiKey": "demo-panel-key",
    "to": "+1222333444",
    "message": "Hello",
    "responseType": "json",
    "confirmation": "true",
    "callbackUrl": "http://receiver/dlr/panelsms",
}
BRAND = {"key": "demo-brand-key", "brandID": "SMSQ", "numbers": "4917012345678", "text": "Hi"}
BRAND_CALLBACK = "http://receiver/dlr/brand?account=demo"


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Receiver:
    """A user's DLR endpoint: records what arrives, answers as told."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.panelsms: list[dict[str, Any]] = []
        self.brand: list[dict[str, str]] = []
        self.statuses = statuses or []
        self.app = Starlette(
            routes=[
                Route("/dlr/panelsms", self._panelsms, methods=["POST"]),
                Route("/dlr/brand", self._brand, methods=["GET"]),
            ]
        )

    async def _panelsms(self, request: Request) -> Response:
        self.panelsms.append(await request.json())
        return Response(status_code=self.statuses.pop(0) if self.statuses else 200)

    async def _brand(self, request: Request) -> Response:
        if request.query_params.get("key") != "demo-callback-key":
            return Response("Forbidden", 403)
        self.brand.append(dict(request.query_params))
        return Response("OK")

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app))


def make(**config: Any) -> tuple[Simulator, httpx.Client, FakeClock]:
    clock = FakeClock()
    config.setdefault("brand_callback_url", BRAND_CALLBACK)
    sim = Simulator(SimConfig(**config), clock=clock)
    return sim, httpx.Client(transport=mock_transport(sim), base_url="http://sim"), clock


async def deliver_due(sim: Simulator, receiver: Receiver, **options: Any) -> list[bool]:
    async with receiver.client() as client:
        return await DlrDispatcher(sim, client, backoff=0, **options).dispatch_due()


async def test_panelsms_report_is_posted_as_json() -> None:
    sim, client, clock = make(dlr_delay=2.0)
    client.get("/sendMtSms.php", params={**PANEL, "transactionId": "order_12345"})
    receiver = Receiver()
    clock.now += 1.9
    assert await deliver_due(sim, receiver) == []  # not due yet
    clock.now += 0.1
    assert await deliver_due(sim, receiver) == [True]
    assert receiver.panelsms == [
        {
            "transactionId": "order_12345",
            "status": "delivered",
            "destination": "+1222333444",
            "timestamp": "2024-01-15T10:30:47Z",
            "errorCode": None,
            "errorDescription": None,
        }
    ]
    assert sim.stats()["dlr"] == {
        "pending": 0,
        "sent": 1,
        "failed": 0,
        "per_number": {"1222333444": 1},
    }


async def test_brand_report_is_a_get_with_the_vendor_parameters() -> None:
    sim, client, clock = make(dlr_delay=1.0)
    answer = client.post("/brand/send", data={**BRAND, "numbers": "4917012345678,447700900123"})
    ids = {m["number"]: m["smsID"] for m in answer.json()["messages"]}
    receiver = Receiver()
    clock.now += 1
    assert await deliver_due(sim, receiver) == [True, True]
    assert sorted(receiver.brand, key=lambda r: r["number"]) == [
        {
            "account": "demo",  # the callback URL's own query is kept
            "key": "demo-callback-key",
            "smsID": ids[number],
            "number": number,
            "statusID": "1",
            "date": "2024-01-15 10:30:46",
        }
        for number in sorted(ids)
    ]


async def test_delivered_ratio_zero_gives_failed_reports() -> None:
    sim, client, _ = make(delivered_ratio=0.0, dlr_delay=0)
    client.get("/sendMtSms.php", params=PANEL)
    client.post("/brand/send", data=BRAND)
    receiver = Receiver()
    await deliver_due(sim, receiver)
    [report] = receiver.panelsms
    assert report["status"] == "undelivered"
    assert report["errorCode"] == 11 and report["errorDescription"] == "Destination barred"
    assert [r["statusID"] for r in receiver.brand] == ["2"]


async def test_sent_report_comes_first_when_asked() -> None:
    sim, client, clock = make(dlr_sent_first=True, dlr_delay=1.0)
    client.get("/sendMtSms.php", params=PANEL)
    client.post("/brand/send", data=BRAND)
    receiver = Receiver()
    await deliver_due(sim, receiver)
    clock.now += 1
    await deliver_due(sim, receiver)
    assert [r["status"] for r in receiver.panelsms] == ["sent", "delivered"]
    assert [r["statusID"] for r in receiver.brand] == ["0", "1"]


def test_reports_are_owed_only_when_asked_for() -> None:
    sim, client, _ = make(brand_callback_url=None)
    client.get("/sendMtSms.php", params={**PANEL, "confirmation": "false"})
    client.get("/sendMtSms.php", params={k: v for k, v in PANEL.items() if k != "callbackUrl"})
    client.post("/brand/send", data=BRAND)
    assert sim.reports_due(T0 + 3600) == []


def test_a_scheduled_message_is_reported_after_its_time() -> None:
    sim, client, _ = make(dlr_delay=1.0)
    client.get("/sendMtSms.php", params={**PANEL, "scheduledDeliveryTime": "600"})
    assert sim.reports_due(T0 + 600) == []
    [report] = sim.reports_due(T0 + 601)
    assert report.payload["timestamp"] == "2024-01-15T10:40:46Z"


async def test_a_failing_receiver_is_retried_then_counted() -> None:
    sim, client, _ = make(dlr_delay=0)
    client.get("/sendMtSms.php", params=PANEL)
    client.get("/sendMtSms.php", params=PANEL)
    receiver = Receiver(statuses=[500, 503, 200, 400])
    async with receiver.client() as http:
        dispatcher = DlrDispatcher(sim, http, backoff=0, attempts=3, concurrency=1)
        assert await dispatcher.dispatch_due() == [True, False]
    assert len(receiver.panelsms) == 4  # 3 tries for the first, a 4xx is not retried
    # Only the report the receiver took counts by number: a chaos run checks
    # each of those was applied.
    assert sim.stats()["dlr"] == {
        "pending": 0,
        "sent": 1,
        "failed": 1,
        "per_number": {"1222333444": 1},
    }


async def test_wrong_callback_key_is_refused_by_the_receiver() -> None:
    sim, client, _ = make(dlr_delay=0, brand_callback_key="wrong")
    client.post("/brand/send", data=BRAND)
    assert await deliver_due(sim, Receiver()) == [False]
    assert sim.stats()["dlr"]["failed"] == 1


# --- over real HTTP ----------------------------------------------------------


async def _wait_for(condition: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.mark.integration
async def test_run_in_thread_serves_both_apis_and_sends_reports() -> None:
    sim = Simulator(SimConfig(dlr_delay=0, brand_callback_url=BRAND_CALLBACK))
    receiver = Receiver()
    with run_in_thread(sim, dlr_client=receiver.client()) as server:
        assert server.url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=server.url) as client:
            panel = await client.get("/sendMtSms.php", params={**PANEL, "message": "a+b &é😀"})
            assert panel.json()["response"]["code"] == 8  # not GSM-7 without dcs=8
            panel = await client.post(
                "/sendMtSms.php", json={**PANEL, "message": "a+b &é😀", "dcs": 8}
            )
            assert panel.json()["response"]["status"] == "OK"
            brand = await client.post("/brand/send", data=BRAND)
            assert brand.status_code == 200 and brand.json()["status"] == "OK"
            await _wait_for(lambda: receiver.panelsms and receiver.brand)
            assert (await client.get("/_stats")).json()["accepted"] == 2
    assert receiver.panelsms[0]["status"] == "delivered"
    assert receiver.brand[0]["smsID"] == brand.json()["messages"][0]["smsID"]


@pytest.mark.integration
def test_a_hang_over_http_is_a_client_read_timeout() -> None:
    sim = Simulator(SimConfig(hang_ratio=1.0))
    with (
        run_in_thread(sim, send_reports=False) as server,
        httpx.Client(base_url=server.url, timeout=0.3) as client,
    ):
        with pytest.raises(httpx.ReadTimeout):
            client.get("/sendMtSms.php", params=PANEL)
        sim.config.hang_ratio = 0.0
        assert client.get("/sendMtSms.php", params=PANEL).status_code == 200
    assert sim.stats()["injected"]["hangs"] == 1


async def test_reports_on_their_way_arrive_when_the_dispatcher_stops() -> None:
    """The simulator going away (its lifespan ends) finishes the callbacks it
    started rather than cutting them: a cut one is an error at the receiver."""
    sim, client, _ = make(dlr_delay=0)
    client.get("/sendMtSms.php", params={**PANEL, "transactionId": "order_1"})
    arrived = asyncio.Event()
    receiver = Receiver()

    async def slow(request: Request) -> Response:
        await asyncio.sleep(0.3)
        receiver.panelsms.append(await request.json())
        arrived.set()
        return Response()

    receiver.app.router.routes[0] = Route("/dlr/panelsms", slow, methods=["POST"])
    async with receiver.client() as http:
        dispatcher = DlrDispatcher(sim, http, grace=2.0)
        running = asyncio.create_task(dispatcher.run(interval=0.01))
        while not dispatcher._tasks:  # the report is on its way
            await asyncio.sleep(0.01)
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert arrived.is_set()
    assert sim.stats()["dlr"]["sent"] == 1


async def test_reports_not_yet_sent_when_the_dispatcher_stops_are_owed_again() -> None:
    """One in flight arrives; one waiting to be tried again goes back to the
    simulator, to be sent once it is back, and is not counted as failed."""
    sim, client, _ = make(dlr_delay=0)
    for tid in ("order_1", "order_2"):
        client.get("/sendMtSms.php", params={**PANEL, "transactionId": tid})
    receiver = Receiver(statuses=[503])  # the first report to arrive is refused, once
    async with receiver.client() as http:
        dispatcher = DlrDispatcher(sim, http, backoff=30.0)
        running = asyncio.create_task(dispatcher.run(interval=0.01))
        while len(receiver.panelsms) < 2:  # the second has arrived; the first waits 30 s
            await asyncio.sleep(0.01)
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert sim.stats()["dlr"] == {
        "pending": 1,
        "sent": 1,
        "failed": 0,
        "per_number": {"1222333444": 1},
    }
    (again,) = sim.reports_due()
    assert again.payload["transactionId"] == receiver.panelsms[0]["transactionId"]
