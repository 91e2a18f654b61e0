"""The ``panelsms`` adapter: ``sendMtSms.php``, one recipient per request.

Every vendor parameter is used: ``senderId``, ``transactionId`` (our message
id, so reports match and a resend carries the same id), ``confirmation`` +
``callbackUrl`` when the account asks for delivery reports, ``dcs`` from the
encoding, ``udh`` for concatenated parts (and flash), ``validityPeriod``,
``scheduledDeliveryTime`` and ``responseType`` (all three formats parsed).

A long text goes as one request per part, each with a concatenation UDH
(``050003`` + reference + total + sequence) and the same transactionId. Parts
go in order; when one fails, the outcome says how many were accepted so a
retry resumes after them instead of sending them twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import xml.etree.ElementTree as ET
from typing import ClassVar

import httpx

from models.sms_text import Encoding, SmsText, analyze
from providers.accounts import PanelSmsAccount
from providers.base import Accepted, Outbound, Outcome, Recipient, Rejected
from providers.codes import Code
from providers.errors import (
    ProviderError,
    ProviderProtocolError,
    ProviderUnavailable,
    QueueFull,
    Throttled,
    error_for_code,
)
from providers.request import retry_after, send_request

FLASH_UDH = "0100"  # the vendor's flash header; single-part texts only
DCS = {Encoding.GSM7: "1", Encoding.UCS2: "8"}  # 1 = GSM7 (0 would mean Latin-1)


def concat_udh(reference: int, total: int, sequence: int) -> str:
    """The 8-bit-reference concatenation header, as hex."""
    return f"050003{reference:02X}{total:02X}{sequence:02X}"


def concat_reference(message_id: str) -> int:
    """Same reference for every part and every resend of one message."""
    return hashlib.blake2b(message_id.encode(), digest_size=1).digest()[0]


class PanelSmsAdapter:
    adapter_name: ClassVar[str] = "panelsms"
    max_recipients = 1

    def __init__(self, account: PanelSmsAccount, *, public_url: str, max_parts: int = 10) -> None:
        self.account = account
        self.callback_url = f"{public_url.rstrip('/')}/dlr/panelsms"
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
                base["udh"] = FLASH_UDH
            return [{**base, "message": sms.parts[0]}]
        ref = concat_reference(recipient.message_id)
        return [
            {**base, "message": part, "udh": concat_udh(ref, total, seq)}
            for seq, part in enumerate(sms.parts, start=1)
        ]

    def _base_params(
        self, outbound: Outbound, recipient: Recipient, encoding: Encoding
    ) -> dict[str, str]:
        acc = self.account
        params = {
            "user": acc.user,
            "apiKey": acc.api_key.get_secret_value(),
            "to": recipient.to,
            "transactionId": recipient.message_id,
            "dcs": DCS[encoding],
        }
        sender = outbound.sender or acc.sender
        if sender:
            params["senderId"] = sender
        if acc.dlr:
            params["confirmation"] = "true"
            params["callbackUrl"] = self.callback_url
        if outbound.validity is not None:
            params["validityPeriod"] = str(int(outbound.validity))
        if outbound.send_time is not None:
            when = outbound.send_time.astimezone(dt.UTC).replace(tzinfo=None)
            params["scheduledDeliveryTime"] = when.isoformat(timespec="seconds")
        if acc.response_type != "plain":
            params["responseType"] = acc.response_type
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
    if response.status_code == 429:
        raise Throttled("HTTP 429 from provider", retry_after=wait)
    if response.status_code == 503:
        raise QueueFull("HTTP 503 from provider", retry_after=wait)
    if response.status_code >= 500:
        raise ProviderUnavailable(f"HTTP {response.status_code} from provider", retry_after=wait)
    body = response.text.strip()
    status, code, transaction_id = _read_body(body, response.status_code)
    if status == "OK":
        return Accepted(message_id, transaction_id or message_id)
    if code == Code.ROAMING:
        return Accepted(
            message_id,
            transaction_id or message_id,
            provider_code=Code.ROAMING,
            note="submitted to a roaming network",
        )
    raise error_for_code(code, retry_after=wait)


def _read_body(body: str, http_status: int) -> tuple[str, int, str | None]:
    """(status, code, transactionId) from a plain, JSON or XML answer."""
    try:
        if body.startswith("{"):
            data = json.loads(body)["response"]
            status, code, tid = str(data["status"]), data.get("code"), data.get("transactionId")
        elif body.startswith("<"):
            root = ET.fromstring(body)
            status = (root.findtext("status") or "").strip()
            code, tid = root.findtext("code"), root.findtext("transactionId")
        elif body.startswith("OK_"):
            return "OK", 0, body[3:] or None
        elif body.startswith("ERROR_"):
            return "ERROR", int(body[6:]), None
        else:
            raise ValueError("unrecognised")
        if status == "OK":
            return "OK", 0, str(tid) if tid not in (None, "") else None
        if status == "ERROR" and code is not None:
            return "ERROR", int(code), str(tid) if tid not in (None, "") else None
        raise ValueError("no status")
    except (ValueError, KeyError, TypeError, ET.ParseError):
        raise ProviderProtocolError(
            f"unreadable panelsms answer (HTTP {http_status})", body
        ) from None
