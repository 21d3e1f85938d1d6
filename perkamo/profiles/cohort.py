"""Profiles that start work at the same moment, handled in one pass: one load for all of
them, one staging pass, one wait for the group commit.

A cohort forms from the profiles of one batch request that were idle, and from messages to
idle profiles admitted in the same scheduler pass (concurrent single requests). Each
profile's batch is still its actor's, driven by the same rounds (rounds.py) as a lone actor:
this module only stages many at once and commits them with one ``commit_many``, which made
a batch of 100 distinct users cost a half to a third of what it did alone.

Nothing waits for a slower neighbour: a batch is answered the moment its unit commits.
Anything unusual takes the actor's own path in a task of its own: a batch with a read, a
lookup or a repeated id is received alone, and a unit not committed at once (a taken id,
another process's version, a limit, a refused write to judge) goes on with its rounds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from datetime import date

import trio

from actors import Actor, Answered
from perkamo.profiles.actor import ProfileActor, ProfileKey, ProfileServices
from perkamo.profiles.commands import AnyCommand, writes_of
from perkamo.profiles.rounds import COMMITTED, Rounds
from perkamo.profiles.staging import Staged
from perkamo.profiles.usage import period_of
from perkamo.program import Program
from perkamo.webhooks import SpaceHook
from storage import Status, Verdict


class ProfileCohort:
    """The actor system's ``Cohort`` for profile actors."""

    def __init__(self, services: ProfileServices) -> None:
        self._services = services

    async def activate(self, keys: Sequence[ProfileKey]) -> list[ProfileActor | Exception]:
        rows = await self._services.loader.load_many(list(keys))
        made: list[ProfileActor | Exception] = []
        for key, row in zip(keys, rows, strict=True):
            try:
                made.append(row if isinstance(row, Exception) else self._services.actor(key, row))
            except Exception as exc:
                made.append(exc)
        return made

    async def receive(
        self,
        batches: Sequence[tuple[Actor[AnyCommand, object], Sequence[AnyCommand]]],
        answered: Answered[object],
    ) -> None:
        together: list[tuple[int, Rounds]] = []
        async with trio.open_nursery() as nursery:
            for i, (actor, messages) in enumerate(batches):
                assert isinstance(actor, ProfileActor)  # what activate() makes
                if actor.takes_together(messages):
                    together.append((i, Rounds(actor, writes_of(messages))))
                else:
                    nursery.start_soon(_alone, answered, i, actor.receive(messages))
            if together:
                await self._together(together, answered, nursery)

    async def _together(
        self, batches: list[tuple[int, Rounds]], answered: Answered[object], nursery: trio.Nursery
    ) -> None:
        """One staging pass and one commit wait for all ``batches``; a batch whose round
        needs storage or a wait goes on in its own task of ``nursery``."""
        services = self._services
        programs: dict[int, tuple[Program, SpaceHook]] = {}
        loaded: set[tuple[int, date]] = set()
        staged: list[tuple[int, Rounds, list[int], Staged]] = []
        for i, rounds in batches:
            space_id = rounds.actor.space_id
            try:
                if space_id not in programs:
                    program = await services.programs.get(space_id)
                    programs[space_id] = (program, await services.webhooks.get(space_id))
                for period in {period_of(c.received_at) for c in rounds.commands}:
                    if (space_id, period) not in loaded:
                        await services.usage.load(space_id, period)
                        loaded.add((space_id, period))
                todo = rounds.todo()
                staged.append((i, rounds, todo, rounds.stage(todo, *programs[space_id])))
            except Exception as exc:
                answered(i, exc)
        committing = [entry for entry in staged if entry[3].writes]
        verdicts = await services.writer.commit_many([entry[3].unit for entry in committing])
        verdict_of = {entry[0]: v for entry, v in zip(committing, verdicts, strict=True)}
        for i, rounds, todo, round_ in staged:
            verdict = verdict_of.get(i, COMMITTED)
            try:
                if verdict.status is Status.COMMITTED and rounds.settle_now(todo, round_):
                    if (answers := rounds.answers_now()) is not None:
                        answered(i, answers)
                        continue
                    unsettled = None
                else:
                    unsettled = (todo, round_, verdict)
            except Exception as exc:
                answered(i, exc)
                continue
            nursery.start_soon(_alone, answered, i, _go_on(rounds, unsettled))


async def _go_on(
    rounds: Rounds, unsettled: tuple[list[int], Staged, Verdict] | None
) -> list[object]:
    """The rest of a batch, as the actor's own rounds would go on."""
    if unsettled is not None:
        await rounds.settle(*unsettled)
    await rounds.go_on()
    return await rounds.conclude()


async def _alone(answered: Answered[object], i: int, work: Awaitable[Sequence[object]]) -> None:
    try:
        result: Sequence[object] | Exception = await work
    except Exception as exc:
        result = exc
    answered(i, result)
