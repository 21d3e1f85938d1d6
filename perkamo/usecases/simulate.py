"""Trying a program on one profile (API §7, simulate): events evaluated in order on the
profile's committed state (or an empty one) with the active program or named versions —
nothing written. The same for the API, the console's "Try" and ``perkamo simulate``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from perkamo.configuration.versions import candidate_program
from perkamo.errors import Code, PerkamoError
from perkamo.http.admin_bodies import SimulateBody, simulate_input
from perkamo.http.bodies import check_tenants, decode_as
from perkamo.http.profile_document import profile_document
from perkamo.http.responses import SimulatedOutcome, SimulateResponse
from perkamo.profiles.commands import ProfileView
from perkamo.profiles.history import RECENT, Kept, read_recent
from perkamo.profiles.snapshot import Snapshot
from perkamo.runtime import Runtime
from perkamo.trials.simulate import SimulatedEvent

MAX_FUTURE = timedelta(minutes=5)
_encoder = msgspec.json.Encoder(decimal_format="number")


async def simulate_document(
    runtime: Runtime,
    space_id: int,
    space_slug: str,
    value: object,
    body_size: int | None,
    received_at: datetime,
) -> SimulateResponse:
    """The simulation a JSON value asks for (the console's form, ``perkamo simulate``),
    validated as the API validates its body."""
    body = decode_as(_encoder.encode(value), SimulateBody, space_slug)
    return await simulate(runtime, space_id, space_slug, body, body_size, received_at)


async def simulate(
    runtime: Runtime,
    space_id: int,
    space_slug: str,
    body: SimulateBody,
    body_size: int | None,
    received_at: datetime,
) -> SimulateResponse:
    """The simulation of a request body (``POST /v1/admin/simulate``)."""
    events = simulate_input(body, body_size)
    for index, (event, _, occurred_at) in enumerate(events):
        check_tenants([t for t in (event.tenant, event.space) if t], space_slug)
        if occurred_at is not None and occurred_at > received_at + MAX_FUTURE:
            raise PerkamoError(
                Code.OCCURRED_AT_IN_FUTURE,
                details=[{"path": f"events[{index}].occurred_at", "message": "in the future"}],
            )
    if body.program:
        program = await runtime.db.run(candidate_program, space_id, body.program)
    else:
        program = await runtime.programs.get(space_id)
    snapshot = Snapshot.from_row(None)
    if body.user_id is not None:
        snapshot = await runtime.committed((space_id, body.user_id))
    traits = snapshot.traits()
    trial = await runtime.simulations.run(
        snapshot.state(), traits,
        [SimulatedEvent(e.event, context, at, e.transaction_id) for e, context, at in events],
        program, received_at, runtime.deadline(),
    )  # fmt: skip
    recent: Kept = ([], [], [])
    if snapshot.exists and body.user_id is not None:
        recent = await runtime.db.run(read_recent, space_id, body.user_id, RECENT)
    view = ProfileView(
        traits, trial.state, snapshot.created_at or received_at, received_at,
        (trial.history + recent[0])[:RECENT], recent[1], recent[2],
    )  # fmt: skip
    document = profile_document(space_slug, body.user_id or "", view, program, datetime.now(UTC))
    results = [
        SimulatedOutcome(
            o.applied,
            o.delta,
            o.leveled_up,
            o.unlocked,
            o.wallet_state,
            o.level,
            o.skipped,
            o.breakdown,
            o.program_versions,
            o.pending,
            o.settled,
        )  # fmt: skip
        for o in trial.outcomes
    ]
    return SimulateResponse(snapshot.exists, program.versions, results, document)
