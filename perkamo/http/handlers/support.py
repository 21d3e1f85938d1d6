"""Support operations (docs/api.md "Support operations"): ``POST /v1/admin/adjustments``,
``POST /v1/admin/redemptions/{transaction_id}/reverse`` and
``POST /v1/admin/events/{transaction_id}/reverse``."""

from __future__ import annotations

from quart import request

from perkamo.errors import validation_failed
from perkamo.http.bodies import (
    AdjustBody,
    EventReverseBody,
    ReverseBody,
    adjust_input,
    check_transaction_id,
    check_user_id,
)
from perkamo.http.edge import Call, Result, api_actor
from perkamo.http.responses import AdjustResponse, EventReverseResponse, ReverseResponse
from perkamo.usecases import support


async def adjust(call: Call[AdjustBody]) -> Result[AdjustResponse]:
    body = adjust_input(call.body)
    answer = await support.adjust(
        call.runtime, call.key.space_id, body.user_id, wallet=body.wallet, amount=body.amount,
        reason=body.reason, transaction_id=body.transaction_id,
        counts_toward_level=body.counts_toward_level, actor=body.actor,
        received_at=call.received_at, limits=call.key.space_limits, audit=api_actor(call.key),
    )  # fmt: skip
    return Result(answer.body)


async def reverse_redemption(call: Call[ReverseBody]) -> Result[ReverseResponse]:
    transaction_id = check_transaction_id(call.params["transaction_id"])
    _, answer = await support.reverse_redemption(
        call.runtime, call.key.space_id, transaction_id, reason=call.body.reason,
        actor=call.body.actor, received_at=call.received_at, limits=call.key.space_limits,
        audit=api_actor(call.key),
    )  # fmt: skip
    return Result(answer.body)


async def reverse_event(call: Call[EventReverseBody]) -> Result[EventReverseResponse]:
    """A browser-sent event is named by ``?source=client&user_id=…`` (docs/api.md "Support
    operations"), or by the same fields in the body; the query wins."""
    transaction_id = check_transaction_id(call.params["transaction_id"])
    body = call.body
    source, user_id = body.source, body.user_id
    if "source" in request.args:
        source = request.args["source"]
        if source not in ("server", "client"):
            raise validation_failed("source", "must be server or client")
    if "user_id" in request.args:
        user_id = check_user_id(request.args["user_id"])
    _, answer = await support.reverse_event(
        call.runtime, call.key.space_id, transaction_id, reason=body.reason, actor=body.actor,
        received_at=call.received_at, limits=call.key.space_limits, audit=api_actor(call.key),
        source=source, user_id=user_id,
    )  # fmt: skip
    return Result(answer.body)
