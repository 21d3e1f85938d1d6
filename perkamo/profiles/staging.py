"""Staging: a batch of one profile's writes → one unit for the group commit.

Every command is applied in order on the state the previous one left, and its rows join
the unit with one snapshot at the end. Each command gets a :class:`Step`: an answer that
stands only if the unit commits, or a refusal that needs no commit (unknown profile, a
business rule, a usage limit).

An unexpected error while staging one command fails that command alone (docs/api.md "Failure
isolation"): its reservations are released, it answers ``internal_error``, and the others
go on from the state before it (the engine never mutates the state it is given).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from perkamo.errors import Code, PerkamoError
from perkamo.profiles.commands import Draft, TransactionKey, Write
from perkamo.profiles.commands.base import Unchanged, encode_json, not_found
from perkamo.profiles.reservations import Reservations
from perkamo.profiles.shards import shard_of
from perkamo.profiles.snapshot import Snapshot
from perkamo.program import ProfileState, Program
from perkamo.program.settling import next_due
from perkamo.webhooks import SpaceHook
from storage import SnapshotWrite, Unit
from storage.history import StoredWrite

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OverLimit:
    """Refused for usage — unless the stored log shows the write is a duplicate."""

    meter: str
    moment: datetime


@dataclass(slots=True)
class Step:
    answer: object  # the command's answer, a PerkamoError, or OverLimit
    needs_commit: bool = False  # the answer stands only if the unit commits


@dataclass(frozen=True, slots=True)
class Applied:
    """One write of the unit as a live stream announces it once committed (docs/api.md "The browser
    half"): the command, its answer, the profile version it made and the state it left (the engine
    never mutates a state it was given, so keeping it costs nothing)."""

    command: Write
    answer: object
    version: int
    state: ProfileState


@dataclass(slots=True)
class Staged:
    unit: Unit
    after: Snapshot
    steps: list[Step]
    reservations: Reservations
    failed: bool  # a command raised: the actor reloads from storage before its next batch
    recent: list[tuple[str, bytes]]  # what the recent lists gain if the unit commits
    stale_recent: bool
    program: Program | None = None
    applied: list[Applied] = field(default_factory=list)  # in order, one version each

    @property
    def writes(self) -> bool:
        return any(step.needs_commit for step in self.steps)


def stage(
    space_id: int,
    user_id: str,
    before: Snapshot,
    commands: list[Write],
    program: Program,
    hook: SpaceHook,
    reservations: Reservations,
    found: dict[TransactionKey, StoredWrite] | None = None,
) -> Staged:
    draft = Draft(
        space_id, user_id, before.version + 1, program, hook, before.traits(), before.state(),
        before.exists, found or {},
    )  # fmt: skip
    steps: list[Step] = []
    applied: list[Applied] = []
    failed = False
    first_write: datetime | None = None
    last_write: datetime | None = None
    for position, command in enumerate(commands):
        # Each write raises the profile's version by one (docs/api.md "The browser half": a stream
        # numbers every change); its rows carry the version it makes.
        draft.version = before.version + len(applied) + 1
        held: list[str] = []
        refusal = _admit(draft, command, reservations, held)
        if refusal is None:
            try:
                answer = command.stage(draft, position)
            except Unchanged as exc:  # answered, nothing to write (a tick with nothing due)
                steps.append(Step(exc.answer))
                continue
            except PerkamoError as exc:  # a business rule: nothing staged, the id not used
                refusal = exc.with_traceback(None)  # kept: no cycle through this frame
            except Exception:
                log.exception("staging a write failed; it alone is refused")
                refusal = PerkamoError(Code.INTERNAL_ERROR)
                failed = True
        if refusal is not None:
            for meter in held:
                reservations.release(command.received_at, meter)
            steps.append(Step(refusal))
            continue
        steps.append(Step(answer, needs_commit=True))
        applied.append(Applied(command, answer, draft.version, draft.state))
        draft.exists = True
        if command.activity:  # a tick is no activity of the customer's
            first_write = first_write or command.received_at
            last_write = command.received_at
    snapshot, after = None, before
    if applied:
        updated = last_write or before.updated_at
        assert updated is not None
        traits, state = encode_json(draft.traits), encode_json(draft.state)
        version = before.version + len(applied)
        due = next_due(draft.state, program)
        snapshot = SnapshotWrite(
            space_id, user_id, traits, state, before.version, updated, version, due,
            None if due is None else shard_of(space_id, user_id),
        )  # fmt: skip
        created = before.created_at or first_write or updated
        after = Snapshot(traits, state, version, created, updated)
    unit = Unit(
        draft.rows,
        snapshot,
        usage=reservations.increments(),
        limits=reservations.limits(),
        outbox=draft.outbox,
        audits=draft.audits,
    )
    return Staged(
        unit, after, steps, reservations, failed, draft.recent, draft.stale_recent, program,
        applied,
    )  # fmt: skip


def _admit(
    draft: Draft, command: Write, reservations: Reservations, held: list[str]
) -> PerkamoError | OverLimit | None:
    """The refusals that come before applying: an unknown profile, a usage limit. Meters
    reserved are listed in ``held`` (released if the command is refused after all)."""
    if command.needs_profile and not draft.exists:
        return not_found(draft.user_id)
    meters = [] if draft.exists else ["profiles"]
    if command.meter is not None:
        meters.append(command.meter)
    for meter in meters:
        if not reservations.reserve(command.received_at, meter, command.limits):
            for taken in held:
                reservations.release(command.received_at, taken)
            held.clear()
            return OverLimit(meter, command.received_at)
        held.append(meter)
    return None
