"""Profiles that start work at the same moment, handled in one pass (a batch request's
distinct users): one load for all of them, one staging pass, one wait for the group commit.

Each profile's batch is still its actor's, applied on its actor's state in mailbox order and
answered exactly as ``ProfileActor.receive`` would answer it (the actor system runs a cohort
only for actors that were idle, and holds each until its batch is answered). Only the cost
per profile is shared: a task, a load hand-off and a commit hand-off each, which made a
batch of 100 distinct users cost two to three times a batch of 100 events of one user.
Anything unusual takes the actor's own path: a batch with a read, a reversal or a repeated
id is received alone, and a unit not committed at once (a taken id, another process's
version, a limit) goes on through the actor's own rounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import trio

from actors import Actor
from perkamo.profiles.actor import ProfileActor, ProfileServices, WriteJob
from perkamo.profiles.messages import Answer, Message, ProfileKey, Read
from perkamo.profiles.snapshot import Snapshot
from perkamo.profiles.staging import Staged
from perkamo.profiles.usage import period_of
from perkamo.program import Program
from perkamo.webhooks import SpaceHook
from storage import Status, Verdict

Result = Sequence[Answer] | Exception
_COMMITTED = Verdict(Status.COMMITTED)


class ProfileCohort:
    """The actor system's ``Cohort`` for profile actors."""

    def __init__(self, services: ProfileServices) -> None:
        self._services = services

    async def activate(self, keys: Sequence[ProfileKey]) -> list[ProfileActor | Exception]:
        rows = await self._services.loader.load_many(list(keys))
        made: list[ProfileActor | Exception] = []
        for (space_id, user_id), row in zip(keys, rows, strict=True):
            if isinstance(row, Exception):
                made.append(row)
                continue
            try:
                made.append(ProfileActor(self._services, space_id, user_id, Snapshot.from_row(row)))
            except Exception as exc:
                made.append(exc)
        return made

    async def receive(
        self, batches: Sequence[tuple[Actor[Message, Answer], Sequence[Message]]]
    ) -> list[Result]:
        results: list[Result | None] = [None] * len(batches)
        together: list[int] = []
        async with trio.open_nursery() as nursery:
            for i, (actor, messages) in enumerate(batches):
                assert isinstance(actor, ProfileActor)  # what activate() makes
                if actor.takes_together(messages):
                    together.append(i)
                else:
                    nursery.start_soon(self._alone, actor, messages, results, i)
            if together:
                await self._together(batches, together, results, nursery)
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    @staticmethod
    async def _alone(
        actor: ProfileActor, messages: Sequence[Message], results: list[Result | None], i: int
    ) -> None:
        try:
            results[i] = await actor.receive(messages)
        except Exception as exc:
            results[i] = exc

    async def _together(
        self,
        batches: Sequence[tuple[Actor[Message, Answer], Sequence[Message]]],
        indices: list[int],
        results: list[Result | None],
        nursery: trio.Nursery,
    ) -> None:
        """One staging pass and one commit wait for every batch in ``indices``; a batch
        that needs more rounds finishes in its own task of ``nursery``."""
        services = self._services
        programs: dict[int, tuple[Program, SpaceHook]] = {}
        loaded: set[tuple[int, date]] = set()
        staged: list[tuple[int, ProfileActor, WriteJob, list[int], Staged]] = []
        for i in indices:
            actor, messages = batches[i]
            assert isinstance(actor, ProfileActor)
            space_id = actor.space_id
            try:
                if space_id not in programs:
                    program = await services.programs.get(space_id)
                    programs[space_id] = (program, await services.webhooks.get(space_id))
                writes = [m for m in messages if not isinstance(m, Read)]  # none: takes_together
                for period in {period_of(m.received_at) for m in writes}:
                    if (space_id, period) not in loaded:
                        await services.usage.load(space_id, period)
                        loaded.add((space_id, period))
                job = WriteJob(writes)
                todo = job.todo()
                staged.append((i, actor, job, todo, actor.stage_with(writes, *programs[space_id])))
            except Exception as exc:
                results[i] = exc
        committing = [entry for entry in staged if entry[4].writes]
        verdicts = await services.writer.commit_many([entry[4].unit for entry in committing])
        verdict_of = {entry[0]: v for entry, v in zip(committing, verdicts, strict=True)}
        for i, actor, job, todo, unit in staged:
            try:
                await actor.settle(job, todo, unit, verdict_of.get(i, _COMMITTED))
                if job.todo():
                    nursery.start_soon(self._finish, actor, job, results, i)
                else:
                    results[i] = await actor.conclude(job)
            except Exception as exc:
                results[i] = exc

    @staticmethod
    async def _finish(
        actor: ProfileActor, job: WriteJob, results: list[Result | None], i: int
    ) -> None:
        try:
            await actor.rounds(job)
            results[i] = await actor.conclude(job)
        except Exception as exc:
            results[i] = exc
