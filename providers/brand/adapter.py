"""The ``brand`` adapter: one request carries one text to many ``numbers``.

Parameters are exactly the vendor's (:mod:`.protocol`: ``key``, ``brandID``,
``numbers``, ``text``, ``stopList``, ``otp``, ``sendTime``). Numbers go as
international digits without ``+`` or ``00``. Recipients beyond
``max_numbers`` are split into several requests, sent concurrently. The
answer's ``messages`` come in request order, one per number; each ``smsID``
is the provider message id that delivery reports carry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar

import httpx

from providers.base import Accepted, Outbound, Outcome, Recipient, Rejected
from providers.brand.account import BrandAccount
from providers.brand.protocol import (
    FALSE,
    HTTP_UNAUTHORIZED,
    TRUE,
    Param,
    brand_number,
    format_send_time,
    is_ok,
    join_numbers,
    read_error,
    read_json_object,
    read_sms_ids,
)
from providers.codes import Code
from providers.errors import (
    PermanentError,
    ProviderError,
    ProviderProtocolError,
    error_for_code,
    error_for_http_status,
)
from providers.request import retry_after, send_request


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
            Param.KEY: self.account.key.get_secret_value(),
            Param.BRAND_ID: self.account.brand_id,
            Param.NUMBERS: join_numbers([brand_number(r.to) for r in recipients]),
            Param.TEXT: outbound.text,
        }
        if not outbound.stop_list:
            params[Param.STOP_LIST] = FALSE
        if outbound.otp:
            params[Param.OTP] = TRUE
        if outbound.send_time is not None:
            params[Param.SEND_TIME] = format_send_time(outbound.send_time)
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
    data = read_json_object(response.content)
    if data is not None:
        try:
            error = read_error(data)
        except ValueError as exc:
            raise ProviderProtocolError(str(exc), response.text) from None
        if error is not None:
            raise error_for_code(error.code, error.message, retry_after=wait)
    # A bare status without our JSON: the decided meanings (shared/providers).
    if (by_status := error_for_http_status(response.status_code, retry_after=wait)) is not None:
        raise by_status
    if response.status_code == HTTP_UNAUTHORIZED:
        raise PermanentError(
            Code.INVALID_API_KEY, "HTTP 401 from provider (key or brandID refused)"
        )
    if response.status_code != 200 or data is None or not is_ok(data):
        raise ProviderProtocolError(
            f"unreadable brand answer (HTTP {response.status_code})", response.text
        )
    try:
        return read_sms_ids(data, numbers)
    except ValueError as exc:
        raise ProviderProtocolError(str(exc), response.text) from None
