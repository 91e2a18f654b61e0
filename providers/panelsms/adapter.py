"""The ``panelsms`` adapter: ``sendMtSms.php``, one recipient per request.

Every vendor parameter is used: ``senderId``, ``transactionId`` (our message
id, so reports match and a resend carries the same id), ``confirmation`` +
``callbackUrl`` when the account asks for delivery reports, ``dcs`` from the
encoding, ``udh`` for concatenated parts (and flash), ``validityPeriod``,
``scheduledDeliveryTime`` and ``responseType`` (all three formats parsed).
The names and values are the vendor's, from :mod:`.protocol`.

A long text goes as one request per part, each with a concatenation UDH
(``050003`` + reference + total + sequence) and the same transactionId. Parts
go in order; when one fails, the outcome says how many were accepted so a
retry resumes after them instead of sending them twice.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import ClassVar

import httpx

from models.sms_text import Encoding, SmsText, analyze
from providers.base import Accepted, Outbound, Outcome, Recipient, Rejected
from providers.codes import Code
from providers.errors import (
    ProviderError,
    ProviderProtocolError,
    error_for_code,
    error_for_http_status,
)
from providers.panelsms.account import PanelSmsAccount
from providers.panelsms.protocol import (
    DCS_FOR_ENCODING,
    FLASH_UDH,
    TRUE,
    Param,
    concat_udh,
    format_time,
    parse_answer,
)
from providers.request import retry_after, send_request

REPORT_PATH = "/dlr/panelsms"  # where producer.http.dlr receives its reports


def concat_reference(message_id: str) -> int:
    """Same reference for every part and every resend of one message."""
    return hashlib.blake2b(message_id.encode(), digest_size=1).digest()[0]


class PanelSmsAdapter:
    adapter_name: ClassVar[str] = "panelsms"
    max_recipients = 1

    def __init__(self, account: PanelSmsAccount, *, public_url: str, max_parts: int = 10) -> None:
        self.account = account
        self.callback_url = f"{public_url.rstrip('/')}{REPORT_PATH}"
        self.max_parts = max_parts

    async def send(self, outbound: Outbound, client: httpx.AsyncClient) -> list[Outcome]:
        sms = analyze(outbound.text, max_parts=self.max_parts)  # once for all recipients
        results = await asyncio.gather(
            *(self._send_one(outbound, r, client, sms) for r in outbound.recipients)
        )
        return list(results)

    def requests_for(
        self, outbound: Outbound, recipient: Recipient, sms: SmsText | None = None
    ) -> list[dict[str, str]]:
        """The parameters of each request (one per part) for one recipient."""
        sms = sms or analyze(outbound.text, max_parts=self.max_parts)
        base = self._base_params(outbound, recipient, sms.encoding)
        total = len(sms.parts)
        if total == 1:
            if outbound.flash:
                base[Param.UDH] = FLASH_UDH
            return [{**base, Param.MESSAGE: sms.parts[0]}]
        ref = concat_reference(recipient.message_id)
        return [
            {**base, Param.MESSAGE: part, Param.UDH: concat_udh(ref, total, seq)}
            for seq, part in enumerate(sms.parts, start=1)
        ]

    def _base_params(
        self, outbound: Outbound, recipient: Recipient, encoding: Encoding
    ) -> dict[str, str]:
        acc = self.account
        params = {
            Param.USER: acc.user,
            Param.API_KEY: acc.api_key.get_secret_value(),
            Param.TO: recipient.to,
            Param.TRANSACTION_ID: recipient.message_id,
            Param.DCS: str(DCS_FOR_ENCODING[encoding]),
        }
        sender = outbound.sender or acc.sender
        if sender:
            params[Param.SENDER_ID] = sender
        if acc.dlr:
            params[Param.CONFIRMATION] = TRUE
            params[Param.CALLBACK_URL] = self.callback_url
        if outbound.validity is not None:
            params[Param.VALIDITY_PERIOD] = str(int(outbound.validity))
        if outbound.send_time is not None:
            params[Param.SCHEDULED_DELIVERY_TIME] = format_time(outbound.send_time)
        if acc.response_type != "plain":
            params[Param.RESPONSE_TYPE] = acc.response_type
        return params

    async def _send_one(
        self, outbound: Outbound, recipient: Recipient, client: httpx.AsyncClient, sms: SmsText
    ) -> Outcome:
        parts = self.requests_for(outbound, recipient, sms)
        accepted: Accepted | None = None
        for index, params in enumerate(
            parts[recipient.first_part - 1 :], start=recipient.first_part
        ):
            try:
                accepted = await self._post(params, recipient.message_id, client)
            except ProviderError as error:
                return Rejected(recipient.message_id, error, parts_sent=index - 1)
        assert accepted is not None, "a text has at least one part"
        return accepted

    async def _post(
        self, params: dict[str, str], message_id: str, client: httpx.AsyncClient
    ) -> Accepted:
        url = str(self.account.url)
        if self.account.method == "GET":
            response = await send_request(
                client, "GET", url, query=params, timeout=self.account.timeout
            )
        else:
            response = await send_request(
                client, "POST", url, json=params, timeout=self.account.timeout
            )
        return parse_response(response, message_id)


def parse_response(response: httpx.Response, message_id: str) -> Accepted:
    """Read an answer in any of the three formats; raise the matching error."""
    wait = retry_after(response)
    if (error := error_for_http_status(response.status_code, retry_after=wait)) is not None:
        raise error
    body = response.text.strip()
    try:
        answer = parse_answer(body)
    except ValueError:
        raise ProviderProtocolError(
            f"unreadable panelsms answer (HTTP {response.status_code})", body
        ) from None
    if answer.code is None:
        return Accepted(message_id, answer.transaction_id or message_id)
    if answer.code == Code.ROAMING:
        return Accepted(
            message_id,
            answer.transaction_id or message_id,
            provider_code=Code.ROAMING,
            note="submitted to a roaming network",
        )
    raise error_for_code(answer.code, retry_after=wait)
