"""Request bodies of the operator's endpoints: configuration uploads, simulations and
back-tests — one msgspec Struct per wire shape, with the field rules of ``bodies.py``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from perkamo.errors import validation_failed
from perkamo.http.bodies import (
    MAX_BATCH,
    EventName,
    OptionalObject,
    Slug,
    Timestamp,
    TransactionId,
    U,
    UserId,
    Version,
    convert,
    event_fields,
    exact,
)
from perkamo.program.conform import conform
from perkamo.program.json_walk import JsonObject
from perkamo.program.timefmt import parse_rfc3339
from perkamo.program.validation import describe


class SimulateEventBody(msgspec.Struct):
    """An event to simulate: the fields of EventBody, ``transaction_id`` optional (ignored)."""

    event: EventName
    transaction_id: TransactionId | None = None
    context: OptionalObject = None
    occurred_at: Timestamp | None = None
    user_id: UserId | None = None  # the profile is the request's; ignored here
    tenant: Slug | None = None
    space: Slug | None = None


class SimulateBody(msgspec.Struct):
    events: Annotated[
        list[Any],
        Meta(
            description="1 to 100 items, each a SimulateEventBody, applied in order",
            extra_json_schema={"minItems": 1, "maxItems": 100},
        ),
    ]
    user_id: UserId | None = None
    program: dict[str, Version] | None = None
    tenant: Slug | None = None
    space: Slug | None = None


class BacktestBody(msgspec.Struct):
    program: dict[str, Version] = {}
    from_: Timestamp | None = msgspec.field(default=None, name="from")
    to: Timestamp | None = None
    tenant: Slug | None = None
    space: Slug | None = None


def backtest_input(body: BacktestBody) -> tuple[dict[str, str], datetime | None, datetime | None]:
    """(module -> version, from, to); ``from`` after ``to`` is refused."""
    bounds: list[datetime | None] = []
    for path, text in (("from", body.from_), ("to", body.to)):
        try:
            bounds.append(None if text is None else parse_rfc3339(text))
        except ValueError as exc:
            raise validation_failed(path, str(exc)) from None
    start, end = bounds
    if start is not None and end is not None and start > end:
        raise validation_failed("to", "must not be before from")
    return dict(body.program), start, end


def simulate_input(
    body: SimulateBody, body_size: int | None = None
) -> list[tuple[SimulateEventBody, JsonObject, datetime | None]]:
    """The request's events, each validated like ``POST /v1/events`` (paths
    ``events[i].…``); raises for 0 or more than 100 events."""
    if body.user_id is not None:
        exact(body.user_id, "user_id")
    if not 1 <= len(body.events) <= MAX_BATCH:
        raise validation_failed("events", f"1 to {MAX_BATCH} events, got {len(body.events)}")
    events = []
    for index, item in enumerate(body.events):
        prefix = f"events[{index}]."
        event = convert(item, SimulateEventBody, prefix.rstrip("."))
        events.append((event, *event_fields(event, prefix, body_size)))
    return events


# -- configuration uploads -------------------------------------------------------------


class ModuleUpload(msgspec.Struct):
    """``POST /v1/admin/config/{module}``: one module body under a version label."""

    version: Version
    body: JsonObject
    active: bool = True
    tenant: Slug | None = None
    space: Slug | None = None


class ModulesUpload(msgspec.Struct):
    """``POST /v1/admin/config``: several module bodies (module → body) under one version."""

    version: Version
    modules: Annotated[dict[str, JsonObject], Meta(min_length=1)]
    active: bool = True
    tenant: Slug | None = None
    space: Slug | None = None


def envelope(value: object, shape: type[U]) -> U:
    try:
        return msgspec.convert(conform(value, shape), shape)
    except msgspec.ValidationError as exc:
        path, message = describe(exc, "")
        raise validation_failed(path.lstrip("."), message) from None
