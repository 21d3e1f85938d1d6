"""``POST /v1/identify``, ``POST /v1/events`` and ``POST /v1/events:batch``."""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from perkamo.errors import Code, PerkamoError
from perkamo.http.bodies import (
    BatchBody,
    EventBody,
    EventInput,
    IdentifyBody,
    TypedBatch,
    batch_items,
    check_tenants,
    event_input,
    identify_input,
    tenants_named,
)
from perkamo.http.edge import Call, Result
from perkamo.http.errors import item_error
from perkamo.http.responses import BatchItem, BatchResponse, EventOutcome, IdentifyResponse
from perkamo.profiles.commands import Identify, Ingest, Written

MAX_FUTURE = timedelta(minutes=5)


async def identify(call: Call[IdentifyBody]) -> Result[IdentifyResponse]:
    user_id, traits = identify_input(call.body)
    command = Identify(traits=traits, received_at=call.received_at, limits=call.key.space_limits)
    answer = await call.runtime.gateway.ask((call.key.space_id, user_id), command)
    return Result(IdentifyResponse(call.key.space_slug, user_id, answer.traits, answer.created))


async def ingest_event(call: Call[EventBody]) -> Result[EventOutcome]:
    try:
        event = event_input(call.body, body_size=call.body_size)
        check_not_future(event, call.received_at)
        answer = await call.runtime.gateway.ask(
            (call.key.space_id, event.user_id), _ingest(event, call)
        )
    except PerkamoError as exc:
        _record(call, call.body, exc)
        raise
    _record(call, event, answer)
    return Result(answer.body)


async def ingest_batch(call: Call[BatchBody | TypedBatch]) -> Result[BatchResponse]:
    """Each item succeeds or fails on its own, whatever happens to its neighbours. Items are
    admitted in list order, so one user's items apply in that order; different users
    proceed in parallel. An item reusing the transaction id of an earlier item for another
    user waits for that item to settle, so the later one is the duplicate or the conflict.
    A batch takes one rate-limit token per item (the route's cost); all its items share
    one deadline."""
    batch = batch_items(call.body)
    results: list[Written | PerkamoError | None] = [None] * len(batch.events)
    waves: list[list[tuple[int, EventInput]]] = [[]]
    owner_of: dict[str, tuple[str, int]] = {}  # transaction id -> (user, wave)
    for index, item in enumerate(batch.events):
        prefix = f"events[{index}]."
        try:
            check_tenants(tenants_named(item), call.key.space_slug)
            event = event_input(item, prefix, call.body_size)
            check_not_future(event, call.received_at, prefix)
        except PerkamoError as exc:
            results[index] = exc.with_traceback(None)  # kept: no cycle through this frame
            continue
        wave = 0
        if (seen := owner_of.get(event.transaction_id)) is not None:
            wave = seen[1] + (seen[0] != event.user_id)
        owner_of[event.transaction_id] = (event.user_id, wave)
        while len(waves) <= wave:
            waves.append([])
        waves[wave].append((index, event))
    gateway, space_id = call.runtime.gateway, call.key.space_id
    deadline = gateway.deadline()
    for wave_items in waves:
        items = [((space_id, e.user_id), _ingest(e, call)) for _, e in wave_items]
        answers = await gateway.ask_many(items, deadline=deadline)
        for (index, _), answer in zip(wave_items, answers, strict=True):
            results[index] = answer
    for item, result in zip(batch.events, results, strict=True):
        _record(call, item, result)
    # A successful item is exactly the single event's answer (docs/api.md), encoded once by the
    # profile's actor; BatchItem documents both forms.
    return Result(BatchResponse([_item(r) for r in results]))


def batch_cost(body: BatchBody | TypedBatch) -> int:
    """A batch takes one rate-limit token per item."""
    return max(len(body.events), 1)


def check_not_future(event: EventInput, received_at: datetime, prefix: str = "") -> None:
    if event.occurred_at is not None and event.occurred_at > received_at + MAX_FUTURE:
        raise PerkamoError(
            Code.OCCURRED_AT_IN_FUTURE,
            details=[{"path": prefix + "occurred_at", "message": "in the future"}],
        )


def _ingest(event: EventInput, call: Call[object]) -> Ingest:
    return Ingest(
        transaction_id=event.transaction_id, event=event.event, context=event.context,
        occurred_at=event.occurred_at, received_at=call.received_at,
        limits=call.key.space_limits,
    )  # fmt: skip


def _item(result: Written | PerkamoError | None) -> BatchItem | msgspec.Raw:
    if isinstance(result, Written):
        return result.body
    failure = result or PerkamoError(Code.INTERNAL_ERROR)
    return BatchItem(
        applied=False, duplicate=False, delta=[], leveled_up=False, unlocked=[],
        wallet_state={}, level=None, error=item_error(failure),
    )  # fmt: skip


def _record(call: Call[object], event: object, outcome: object) -> None:
    """A duplicate or a refusal, for the console's Events screen (perkamo/attempts.py)."""
    if isinstance(outcome, PerkamoError):
        status, code, message = "refused", outcome.code.value, str(outcome)
    elif isinstance(outcome, Written) and outcome.duplicate:
        status, code, message = "duplicate", None, None
    else:
        return
    fields = event if isinstance(event, dict) else {}

    def text(name: str) -> str | None:
        value = getattr(event, name, None) if not fields else fields.get(name)
        return value[:256] if isinstance(value, str) else None

    call.runtime.attempts.record(
        call.key.space_id, call.received_at, text("transaction_id"), text("user_id"),
        text("event"), status, code, message, call.request_id,
    )  # fmt: skip
