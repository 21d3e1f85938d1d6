"""The client API (docs/api.md "The browser half"): what a page may do with a browser token —
``GET /v1/client/profile``, ``GET /v1/client/program``, ``POST /v1/client/events``, the live
stream ``GET /v1/client/stream`` — and the browser client itself,
``GET /v1/client/perkamo-browser.js``. The edge (client_edge.py) has verified the token,
the origin, the purpose, the capability and the per-customer rate."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from importlib import resources
from typing import Any

import msgspec

from perkamo.errors import Code, PerkamoError, validation_failed
from perkamo.http.bodies import check_object, event_input
from perkamo.http.browser_shapes import (
    ClientEventBody,
    ClientProfileDocument,
    ClientProgramDocument,
)
from perkamo.http.client_edge import ClientCall, StreamBody
from perkamo.http.edge import Plain, RawBody, Result
from perkamo.http.live import Watch, events, last_event_id
from perkamo.http.profile_document import profile_document
from perkamo.http.program_document import blueprint
from perkamo.http.responses import EventOutcome
from perkamo.profiles.actor import ProfileActor
from perkamo.profiles.commands import ClientEvent
from perkamo.profiles.committed import committed_view
from perkamo.program import Program
from perkamo.program.json_walk import JsonObject
from perkamo.runtime import Runtime
from storage.browser_keys import BrowserKeyRecord

MAX_CLIENT_CONTEXT = 2048  # bytes: a browser's context is small
_encoder = msgspec.json.Encoder(decimal_format="number")
_SCRIPT = resources.files("perkamo").joinpath("http/static/perkamo-browser.js")


async def _document(
    runtime: Runtime, key: BrowserKeyRecord, user_id: str
) -> ClientProfileDocument | None:
    """The customer's committed profile as a browser sees it (no mailbox slot taken)."""
    profile = (key.space_id, user_id)
    resident = runtime.actors.resident(profile)
    actor = resident if isinstance(resident, ProfileActor) else None
    view = await committed_view(runtime.profiles, profile, actor)
    if view is None:
        return None
    program = await runtime.programs.get(key.space_id)
    full = profile_document(key.space_slug, user_id, view, program, datetime.now(UTC))
    fields: dict[str, Any] = {f: getattr(full, f) for f in full.__struct_fields__}
    exposed = key.expose_traits
    if exposed:
        fields["traits"] = {k: v for k, v in full.traits.items() if k in exposed}
    else:
        del fields["traits"]
    return ClientProfileDocument(**fields, version=view.version)


async def profile(call: ClientCall[None]) -> Result[ClientProfileDocument]:
    document = await _document(call.runtime, call.caller.key, call.caller.user_id)
    if document is None:
        raise PerkamoError(Code.PROFILE_NOT_FOUND, "This customer has no profile yet.")
    return Result(document)


async def program(call: ClientCall[None]) -> Result[ClientProgramDocument]:
    active = await call.runtime.programs.get(call.caller.space_id)
    return Result(ClientProgramDocument(widget_blueprint(active), active.versions))


def widget_blueprint(active: Program) -> JsonObject:
    """The blueprint without what a page must not see: rules' and boosts' conditions
    (how to game them) and rewards' effects (they may hold coupon codes)."""
    shown = blueprint(active)
    shown["earningRules"] = [_without(r, "conditions") for r in shown["earningRules"]]
    shown["boosts"] = [_without(b, "conditions") for b in shown["boosts"]]
    shown["rewards"] = [_without(r, "effect") for r in shown["rewards"]]
    return shown


def _without(item: object, name: str) -> object:
    return {k: v for k, v in item.items() if k != name} if isinstance(item, dict) else item


def configured_events(active: Program) -> set[str]:
    """The events a program configures: named in its catalog or its rules."""
    return {key for key, _, _ in active.catalog} | ({r.event for r in active.rules} - {"*"})


async def track(call: ClientCall[ClientEventBody]) -> Result[EventOutcome]:
    """One event for the token's customer: allowed by the browser key, configured by the
    program, in the customer's own namespace of transaction ids."""
    body, caller = call.body, call.caller
    if body.user_id is not None and body.user_id != caller.user_id:
        raise PerkamoError(Code.USER_MISMATCH, "user_id is not the token's customer.")
    if body.occurred_at is not None:
        raise validation_failed("occurred_at", "is not accepted from a browser")
    check_object(body.context, "context")
    if isinstance(body.context, dict) and len(_encoder.encode(body.context)) > MAX_CLIENT_CONTEXT:
        raise validation_failed(
            "context", f"encoded size must be at most {MAX_CLIENT_CONTEXT} bytes from a browser"
        )
    active = await call.runtime.programs.get(caller.space_id)
    allowed = caller.key.allowed_events
    if body.event not in configured_events(active) or (
        allowed != ["*"] and body.event not in allowed
    ):
        raise PerkamoError(Code.EVENT_NOT_ALLOWED, f"A browser may not send {body.event!r}.")
    fields = {"user_id": caller.user_id, "event": body.event,
              "transaction_id": body.transaction_id, "context": body.context}  # fmt: skip
    event = event_input(fields, body_size=call.body_size)
    limits = await _limits(call)
    command = ClientEvent(
        transaction_id=event.transaction_id, event=event.event, context=event.context,
        received_at=call.received_at, limits=limits,
    )  # fmt: skip
    answer = await call.runtime.gateway.ask((caller.space_id, caller.user_id), command)
    return Result(answer.body)


async def _limits(call: ClientCall[object]) -> JsonObject:
    """The Space's usage limits (the minting key's record carries them, cached)."""
    record = await call.runtime.browser.api_key(call.caller.claims.ak)
    return {} if record is None else record.space_limits


async def stream(call: ClientCall[None]) -> Result[StreamBody]:
    """``GET /v1/client/stream?token=…``: Server-Sent Events of the customer's profile
    (perkamo/http/live.py)."""
    runtime, caller = call.runtime, call.caller
    request = call.request
    resume = last_event_id(request.headers.get("last-event-id"), request.args.get("last_event_id"))
    opened = runtime.streams.open(caller.claims.jti, caller.key.id, caller.user_id)
    watch = Watch(runtime, (caller.space_id, caller.user_id))
    try:
        watch.subscribe()
        snapshot = partial(_snapshot, runtime, caller.key, caller.user_id)
        first = await snapshot()
    except BaseException:
        watch.close()
        runtime.streams.close(opened)
        raise
    chunks = events(
        runtime, opened, watch, snapshot, first, resume, caller.claims.exp,
        partial(runtime.browser.still_valid, caller),
    )  # fmt: skip
    return Result(StreamBody(chunks))


async def _snapshot(runtime: Runtime, key: BrowserKeyRecord, user_id: str) -> tuple[int, bytes]:
    document = await _document(runtime, key, user_id)
    if document is None:
        return 0, b"null"
    return document.version, _encoder.encode(document)


async def script(plain: Plain) -> Result[RawBody]:
    """The browser client (clients/js/perkamo-browser.js, shipped in the package)."""
    return Result(
        RawBody(_SCRIPT.read_bytes(), "text/javascript; charset=utf-8"),
        headers={"cache-control": "public, max-age=300"},
    )
