"""Profiles that start work at the same moment, handled in one pass: one load for all of
them, one staging pass, one wait for the group commit.

A cohort forms from the profiles of one batch request that were idle, and from messages to
idle profiles admitted in the same scheduler pass (concurrent single requests). Each
profile's batch is still its actor's, applied on its actor's state in mailbox order and
answered exactly as ``ProfileActor.receive`` would answer it; the actor system runs a
cohort only for actors that were idle and holds each until its batch is answered. Only the
cost per profile is shared: a task, a load hand-off and a commit hand-off each, which made
a batch of 100 distinct users cost two to three times a batch of 100 events of one user.

Nothing waits for a slower neighbour: a batch is answered the moment its unit commits.
Anything unusual takes the actor's own path in a task of its own: a batch with a read, a
reversal or a repeated id is received alone, and a unit not committed at once (a taken id,
another process's version, a limit, a refused redemption to judge) goes on through the
actor's own rounds.
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from datetime import date
from typing import Any

import trio

from actors import Actor, Answered
from perkamo.profiles.actor import ProfileActor, ProfileServices, WriteJob
from perkamo.profiles.messages import Answer, Message, ProfileKey, Read, Write
from perkamo.profiles.staging import Staged
from perkamo.profiles.usage import period_of
from perkamo.program import Program
from perkamo.webhooks import SpaceHook
from storage import Status, Verdict

_COMMITTED = Verdict(Status.COMMITTED)


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
        batches: Sequence[tuple[Actor[Message, Answer], Sequence[Message]]],
        answered: Answered[Answer],
    ) -> None:
        together: list[tuple[int, ProfileActor, list[Write]]] = []
        async with trio.open_nursery() as nursery:
            for i, (actor, messages) in enumerate(batches):
                assert isinstance(actor, ProfileActor)  # what activate() makes
                if actor.takes_together(messages):
                    together.append((i, actor, [m for m in messages if not isinstance(m, Read)]))
                else:
                    nursery.start_soon(self._alone, answered, i, actor.receive(messages))
            if together:
                await self._together(together, answered, nursery)

    async def _together(
        self,
        batches: list[tuple[int, ProfileActor, list[Write]]],
        answered: Answered[Answer],
        nursery: trio.Nursery,
    ) -> None:
        """One staging pass and one commit wait for all ``batches``; a batch whose round
        needs storage or a wait goes on in its own task of ``nursery``."""
        services = self._services
        programs: dict[int, tuple[Program, SpaceHook]] = {}
        loaded: set[tuple[int, date]] = set()
        staged: list[tuple[int, ProfileActor, WriteJob, list[int], Staged]] = []
        for i, actor, writes in batches:
            space_id = actor.space_id
            try:
                if space_id not in programs:
                    program = await services.programs.get(space_id)
                    programs[space_id] = (program, await services.webhooks.get(space_id))
                for period in {period_of(m.received_at) for m in writes}:
                    if (space_id, period) not in loaded:
                        await services.usage.load(space_id, period)
                        loaded.add((space_id, period))
                job = WriteJob(writes)
                todo = job.todo()
                staged.append((i, actor, job, todo, actor.stage_with(writes, *programs[space_id])))
            except Exception as exc:
                answered(i, exc)
        committing = [entry for entry in staged if entry[4].writes]
        verdicts = await services.writer.commit_many([entry[4].unit for entry in committing])
        verdict_of = {entry[0]: v for entry, v in zip(committing, verdicts, strict=True)}
        for i, actor, job, todo, round_ in staged:
            verdict = verdict_of.get(i, _COMMITTED)
            try:
                if verdict.status is Status.COMMITTED and actor.settle_committed_now(
                    job, todo, round_
                ):
                    if (answers := actor.answers_now(job)) is not None:
                        answered(i, answers)
                        continue
                    unsettled = None
                else:
                    unsettled = (todo, round_, verdict)
            except Exception as exc:
                answered(i, exc)
                continue
            nursery.start_soon(self._alone, answered, i, self._go_on(actor, job, unsettled))

    @staticmethod
    async def _go_on(
        actor: ProfileActor, job: WriteJob, unsettled: tuple[list[int], Staged, Verdict] | None
    ) -> list[Answer]:
        """The rest of a job, as the actor's own ``receive`` would go on."""
        if unsettled is not None:
            await actor.settle(job, *unsettled)
        await actor.rounds(job)
        return await actor.conclude(job)

    @staticmethod
    async def _alone(
        answered: Answered[Answer], i: int, work: Coroutine[Any, Any, Sequence[Answer]]
    ) -> None:
        try:
            result: Sequence[Answer] | Exception = await work
        except Exception as exc:
            result = exc
        answered(i, result)
