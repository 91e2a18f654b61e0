"""The ``brand`` adapter: one request carries one text to many ``numbers``.

Parameters are exactly the vendor's (``key``, ``brandID``, ``numbers``,
``text``, ``stopList``, ``otp``, ``sendTime``). Numbers go as international
digits without ``+`` or ``00``. Recipients beyond ``max_numbers`` are split
into several requests, sent concurrently. The answer's ``messages`` come in
request order, one per number; each ``smsID`` is the provider message id that
delivery reports carry.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any, ClassVar

import httpx

from providers.accounts import BrandAccount
from providers.base import Accepted, Outbound, Outcome, Recipient, Rejected
from providers.errors import (
    PermanentError,
    ProviderError,
    ProviderProtocolError,
    ProviderUnavailable,
    QueueFull,
    Throttled,
    error_for_code,
)
from providers.request import retry_after, send_request

SEND_TIME_FORMAT = "%Y-%m-%d %H:%M"  # the vendor's Y-m-d H:i, in UTC


def brand_number(e164: str) -> str:
    """``+4917...`` -> ``4917...`` (the vendor wants no ``+`` and no ``00``)."""
    return e164.removeprefix("+")


class BrandAdapter:
    adapter_name: ClassVar[str] = "brand"

    def __init__(self, account: BrandAccount) -> None:
        self.account = account
        self.max_recipients = account.max_numbers

    async def send(self, outbound: Outbound, client: httpx.AsyncClient) -> list[Outcome]:
        recipients = list(outbound.recipients)
        size = self.max_recipients
        chunks = [recipients[i : i + size] for i in range(0, len(recipients), size)]
        results = await asyncio.gather(*(self._send_chunk(outbound, c, client) for c in chunks))
        return [outcome for chunk in results for outcome in chunk]

    def params_for(self, outbound: Outbound, recipients: Sequence[Recipient]) -> dict[str, str]:
        params = {
            "key": self.account.key.get_secret_value(),
            "brandID": self.account.brand_id,
            "numbers": ",".join(brand_number(r.to) for r in recipients),
            "text": outbound.text,
        }
        if not outbound.stop_list:
            params["stopList"] = "false"
        if outbound.otp:
            params["otp"] = "true"
        if outbound.send_time is not None:
            params["sendTime"] = outbound.send_time.astimezone(dt.UTC).strftime(SEND_TIME_FORMAT)
        return params

    async def _send_chunk(
        self, outbound: Outbound, recipients: Sequence[Recipient], client: httpx.AsyncClient
    ) -> list[Outcome]:
        try:
            response = await send_request(
                client,
                "POST",
                str(self.account.url),
                form=self.params_for(outbound, recipients),
                timeout=self.account.timeout,
            )
            ids = parse_response(response, [brand_number(r.to) for r in recipients])
        except ProviderError as error:
            return [Rejected(r.message_id, error) for r in recipients]
        return [Accepted(r.message_id, sms_id) for r, sms_id in zip(recipients, ids, strict=True)]


def parse_response(response: httpx.Response, numbers: Sequence[str]) -> list[str]:
    """The ``smsID`` of each number, in order; raise the matching error otherwise."""
    wait = retry_after(response)
    data = _json_or_none(response)
    if data is not None and data.get("status") == "ERROR" and "code" in data:
        try:
            code = int(data["code"])
        except (TypeError, ValueError):
            raise ProviderProtocolError(
                "brand error without a numeric code", response.text
            ) from None
        message = data.get("message")
        raise error_for_code(code, str(message) if message else None, retry_after=wait)
    # A bare status without our JSON: the decided meanings (shared/providers).
    if response.status_code == 429:
        raise Throttled("HTTP 429 from provider", retry_after=wait)
    if response.status_code == 503:
        raise QueueFull("HTTP 503 from provider", retry_after=wait)
    if response.status_code >= 500:
        raise ProviderUnavailable(f"HTTP {response.status_code} from provider", retry_after=wait)
    if response.status_code == 401:
        raise PermanentError(2, "HTTP 401 from provider (key or brandID refused)")
    if response.status_code != 200 or data is None or data.get("status") != "OK":
        raise ProviderProtocolError(
            f"unreadable brand answer (HTTP {response.status_code})", response.text
        )
    return _sms_ids(data, numbers, response.text)


def _json_or_none(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = json.loads(response.content)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _sms_ids(data: dict[str, Any], numbers: Sequence[str], raw: str) -> list[str]:
    messages = data.get("messages")
    if not isinstance(messages, list) or len(messages) != len(numbers):
        raise ProviderProtocolError(f"brand answer should list {len(numbers)} messages", raw)
    ids: list[str] = []
    for entry, number in zip(messages, numbers, strict=True):
        if (
            not isinstance(entry, dict)
            or str(entry.get("number")) != number
            or not entry.get("smsID")
        ):
            raise ProviderProtocolError(f"brand answer does not match number {number}", raw)
        ids.append(str(entry["smsID"]))
    return ids
