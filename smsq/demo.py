"""``smsq demo`` on the embedded default: no service needed.

For now it shows the foundation at work: the provider simulator served over
HTTP in this process, and both adapters sending through smsq's pooled client
(a short text, a long concatenated one, a Unicode one, an OTP batch), with an
injected queue-full answer shown as the retryable error it is. The full demo
(a campaign through Celery workers, live progress) comes with the demo issue.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from models.ids import new_id
from models.sms_text import analyze
from providers.base import Accepted, Outbound, Recipient
from providers.http import make_async_client
from providers.registry import make_adapter
from providers.simulator import Simulator, run_in_thread
from smsq.settings import Settings
from smsq.simulator_setup import simulator_config


@dataclass(frozen=True)
class Sample:
    account: str
    label: str
    outbound: Outbound


def samples() -> list[Sample]:
    def to(n: int) -> list[Recipient]:
        return [Recipient(new_id(), f"+49151{i:07d}") for i in range(n)]

    return [
        Sample(
            "panel", "short GSM-7", Outbound(text="Your order #1234 has shipped.", recipients=to(3))
        ),
        Sample(
            "panel", "long GSM-7 (3 parts)", Outbound(text="Spring sale! " * 30, recipients=to(2))
        ),
        Sample("panel", "Unicode", Outbound(text="Zamówienie gotowe ✅ 😀", recipients=to(2))),
        Sample(
            "brand", "OTP batch", Outbound(text="Your code is 482913", recipients=to(5), otp=True)
        ),
        Sample(
            "brand",
            "campaign batch",
            Outbound(text="Hi! New arrivals in store.", recipients=to(1200)),
        ),
        Sample("panel", "queue full (injected)", Outbound(text="retry me", recipients=to(1))),
    ]


async def run_samples(settings: Settings, base_url: str, sim: Simulator, console: Console) -> None:
    table = Table("account", "what", "encoding", "parts", "recipients", "accepted", "errors")
    async with make_async_client() as client:
        for sample in samples():
            account = settings.providers[sample.account]
            path = "/sendMtSms.php" if account.adapter == "panelsms" else "/brand/send"
            account = account.model_copy(update={"url": f"{base_url}{path}"})
            adapter = make_adapter(account, public_url=settings.public_url)
            if "injected" in sample.label:
                sim.config.patch({"queue_full_ratio": 1.0})
            outcomes = await adapter.send(sample.outbound, client)
            sim.config.patch({"queue_full_ratio": 0.0})
            sms = analyze(sample.outbound.text)
            errors = sorted(
                {type(o.error).__name__ for o in outcomes if not isinstance(o, Accepted)}
            )
            table.add_row(
                sample.account,
                sample.label,
                sms.encoding,
                str(sms.segments),
                str(len(outcomes)),
                str(sum(isinstance(o, Accepted) for o in outcomes)),
                ", ".join(errors) or "-",
            )
    console.print(table)


def run_demo(console: Console | None = None) -> int:
    console = console or Console()
    settings = Settings(providers_file=None)  # the demo always uses the built-in accounts
    sim = Simulator(simulator_config(settings, brand_callback_url=None, latency_ms=5))
    with run_in_thread(sim, send_reports=False) as server:
        console.print(f"[bold]smsq demo[/bold]: provider simulator at {server.url}")
        asyncio.run(run_samples(settings, server.url, sim, console))
        stats = sim.stats()
    console.print(
        f"simulator accepted {stats['accepted']} messages "
        f"in {stats['requests']['total']} requests, "
        f"rejected {stats['rejected']['total']} (by code {stats['rejected']['by_code']}), "
        f"duplicates: {len(stats['duplicates'])}"
    )
    console.print(
        "The full pipeline demo (a campaign through workers, live progress) comes with the "
        "demo issue; the pipeline runs today with smsq api, smsq worker and smsq beat."
    )
    return 0
