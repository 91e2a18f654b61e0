"""``/v1/messages``: send one text to one number or to a list, and look one up.

A list ``to`` is all or nothing (:func:`producer.single_messages.send_many`): if
any number is invalid the answer is a 422 naming it (``to[3]``) and nothing is
written or sent. The answer to a list is a list, in the request's order.

A message belongs to the API key that sent it (campaign messages, like
campaigns, to every key): looking up another key's message answers 404,
exactly as for an id that does not exist, so ids cannot be probed. The
producer's database and broker calls block: they run in the threadpool
(plain ``def`` routes, ``run_in_threadpool``, the group commit's thread).
"""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from producer.api import Producer
from producer.campaign_views import message_view
from producer.errors import InvalidField
from producer.http.auth import CurrentClient
from producer.http.deps import DbSession, ProducerDep
from producer.http.errors import ApiError
from producer.http.idempotency import STATE_IDEMPOTENCY_KEY
from producer.http.request_coalescing import GroupCommit
from producer.http.schemas import MessageAccepted, MessageOut, SendMessage, error_responses
from producer.message_spec import check_message
from producer.numbers import normalize_number
from producer.receipts import MessageReceipt
from producer.single_messages import CheckedSend, send_each, send_many

router = APIRouter(prefix="/v1/messages", tags=["messages"])


@router.post(
    "",
    status_code=202,
    response_model=MessageAccepted | list[MessageAccepted],
    responses=error_responses(413, 415, 422),
    summary="Send an SMS to one number or to a list",
)
async def send_message(
    request: Request, body: SendMessage, client: CurrentClient, producer: ProducerDep
) -> MessageAccepted | list[MessageAccepted]:
    """Accept the message(s): validated, stored, then queued (or scheduled).

    ``callback_url`` defaults to the API key's webhook URL. A number on the
    stop list is accepted as ``suppressed`` and never sent.

    The ``Idempotency-Key`` is handled for every POST by the idempotency
    middleware; for one number it is also stored on the message itself, so
    even a request whose message was committed but whose answer was lost (a
    5xx after the commit) cannot send twice when retried.

    One number is checked here, in the event loop (no I/O), and stored by the
    app's group commit together with the other single sends arriving at the
    same time: one transaction and one Celery task for the lot.
    """
    callback_url = body.callback_url if body.callback_url is not None else client.webhook_url
    if isinstance(body.to, list):
        receipts = await run_in_threadpool(
            send_many,
            producer,
            body.to,
            body.text,
            sender=body.sender,
            kind=body.kind,
            send_at=body.send_at,
            provider=body.provider,
            callback_url=callback_url,
            validity=body.validity,
            client_id=client.id,
        )
        return [MessageAccepted.model_validate(receipt) for receipt in receipts]
    if not isinstance(body.to, str):
        raise InvalidField("to", "must be a phone number or a list of phone numbers")
    key = getattr(request.state, STATE_IDEMPOTENCY_KEY, None)
    spec = check_message(
        producer.settings,
        now=producer.clock(),
        text=body.text,
        kind=body.kind,
        send_at=body.send_at,
        provider=body.provider,
        validity=body.validity,
        sender=body.sender,
        callback_url=callback_url,
        stop_list=True,
        flash=False,
        client_id=client.id,
        idempotency_key=key,
    )
    item = CheckedSend(normalize_number(body.to, field="to"), spec, key)
    receipt = await send_group(request, producer).submit(item)
    return MessageAccepted.model_validate(receipt)


def send_group(request: Request, producer: Producer) -> GroupCommit[CheckedSend, MessageReceipt]:
    """The app's group commit of single sends, made on first use for its producer."""
    state = request.app.state
    made: tuple[Producer, GroupCommit[CheckedSend, MessageReceipt]] | None = getattr(
        state, "send_group", None
    )
    if made is None or made[0] is not producer:  # a test may swap the producer
        made = state.send_group = (producer, GroupCommit(partial(send_each, producer)))
    return made[1]


@router.get(
    "/{message_id}",
    response_model=MessageOut,
    responses=error_responses(404),
    summary="A message's status and history",
)
def get_message(message_id: str, client: CurrentClient, session: DbSession) -> MessageOut:
    """Status, provider and its message id, error, attempts and every status
    event. Never the text."""
    view = message_view(session, message_id, client_id=client.id)
    if view is None:
        raise ApiError(404, "not_found", "no message with this id", field="message_id")
    return MessageOut.model_validate(view)
