"""The rounds of one batch of a profile's writes: stage → commit → settle → answer, until
every write's answer is certain. One state machine, driven the same way by the lone actor
(``run``) and by a cohort of profiles that started together (``stage`` for many, one
``commit_many``, then ``settle_now`` or ``settle`` + ``run`` each).

A unit refused at commit is settled write by write — a taken transaction id is answered
from the stored original (duplicate or conflict), a stale version (another process wrote
the profile) reloads and re-applies, a limit another process filled is counted again —
and the rest is staged again.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import trio

from perkamo.errors import Code, PerkamoError
from perkamo.profiles.commands import TransactionKey, Write
from perkamo.profiles.idempotency import judge_taken, originals
from perkamo.profiles.reservations import Reservations
from perkamo.profiles.staging import OverLimit, Staged, stage
from perkamo.profiles.usage import limit_exceeded, period_of
from perkamo.program import Program
from perkamo.webhooks import SpaceHook
from storage import CommitOutcomeUnknown, Status, Verdict
from storage.history import StoredWrite

if TYPE_CHECKING:
    from perkamo.profiles.actor import ProfileActor

# Rounds one batch may take: a stale version, a taken id or a usage wait each costs one.
# Two processes racing on one hot profile settle in a few; past this the writes answer 503
# (retry with the same ids) instead of holding the mailbox.
MAX_ROUNDS = 8
_STALE_BACKOFF = 0.004  # seconds × round, randomised, between rounds lost to a version race
_USAGE_WAIT = 2.0  # at most this long for other profiles' reservations of a full meter
COMMITTED = Verdict(Status.COMMITTED)


class Rounds:
    """One batch of writes on its way to certain answers (each an answer or an error)."""

    __slots__ = ("actor", "answers", "commands", "refused", "rounds", "waited")

    def __init__(self, actor: ProfileActor, commands: list[Write]) -> None:
        self.actor = actor
        self.commands = commands
        self.answers: dict[int, object] = {}
        self.waited: set[int] = set()  # refused over a limit once, waited, staged again
        self.refused: set[int] = set()  # writes refused without a commit, to judge
        self.rounds = 0

    def todo(self) -> list[int]:
        return [i for i in range(len(self.commands)) if i not in self.answers]

    # -- the lone driver -------------------------------------------------------------------

    async def run(self) -> list[object]:
        """Stage, commit and settle until every write is answered (or the rounds are used
        up); returns the answers in order."""
        services = self.actor.services
        for period in {period_of(c.received_at) for c in self.commands}:
            await services.usage.load(self.actor.space_id, period)
        await self.go_on()
        return await self.conclude()

    async def go_on(self) -> None:
        services = self.actor.services
        while self.rounds < MAX_ROUNDS and (todo := self.todo()):
            commands = [self.commands[i] for i in todo]
            program = await services.programs.get(self.actor.space_id)
            hook = await services.webhooks.get(self.actor.space_id)
            found = await self._lookups(commands)
            staged = self.stage(todo, program, hook, found)
            verdict = await services.writer.commit(staged.unit) if staged.writes else COMMITTED
            await self.settle(todo, staged, verdict)

    async def _lookups(self, commands: list[Write]) -> dict[TransactionKey, StoredWrite]:
        keys = {k for c in commands if (k := c.lookup_key()) is not None}
        if not keys:
            return {}
        return await originals(
            self.actor.services.db, self.actor.space_id, keys, self.actor.user_id
        )

    # -- the steps, shared with a cohort ---------------------------------------------------

    def stage(
        self,
        todo: list[int],
        program: Program,
        hook: SpaceHook,
        found: dict[TransactionKey, StoredWrite] | None = None,
    ) -> Staged:
        actor = self.actor
        reservations = Reservations(actor.services.usage, actor.space_id)
        return stage(
            actor.space_id, actor.user_id, actor.snapshot, [self.commands[i] for i in todo],
            program, hook, reservations, found,
        )  # fmt: skip

    def settle_now(self, todo: list[int], staged: Staged) -> bool:
        """Settle a round whose unit committed, when it needs no wait (no write over a
        limit): True when done; False when nothing was done (``settle`` it instead)."""
        if any(isinstance(step.answer, OverLimit) for step in staged.steps):
            return False
        self._record(todo, staged, COMMITTED)
        return True

    def answers_now(self) -> list[object] | None:
        """The answers of a settled batch, when certain without storage (else
        ``conclude``)."""
        return None if self.refused or self.todo() else self._answers()

    async def settle(self, todo: list[int], staged: Staged, verdict: Verdict) -> None:
        """One round's outcome: the answers it made certain, and what the next round needs
        (the stored originals of taken ids, a reload, a recount)."""
        round_ = self.rounds
        over = self._record(todo, staged, verdict)
        actor = self.actor
        if verdict.status is Status.COMMITTED:
            if over:
                await self._answer_over_limit(over)
        elif verdict.status is Status.CONFLICT:
            pending = [self.commands[i] for i in todo if i not in self.answers]
            taken = await self._judge(pending, verdict.taken, refused_at_commit=True)
            self._answer_taken(taken)
        elif verdict.status is Status.STALE:
            # Another process wrote this profile: re-apply on its state, after a
            # randomised pause so that two racing processes do not collide again.
            await actor.reload()
            await trio.sleep(random.uniform(0, _STALE_BACKOFF * (round_ + 1)))
        elif verdict.status is Status.OVER_LIMIT:
            # Other server processes filled a limit this one's count had room in:
            # count again from storage, then stage again (refused if it is full).
            for period in {period_of(self.commands[i].received_at) for i in todo}:
                await actor.services.usage.refresh(actor.space_id, period)
        elif verdict.status is Status.UNAVAILABLE:
            down = PerkamoError(Code.STORAGE_UNAVAILABLE)
            self.answers.update({i: down for i in todo if i not in self.answers})
        else:
            raise CommitOutcomeUnknown("the commit outcome of this profile's writes is unknown")

    async def conclude(self) -> list[object]:
        """Idempotency before business rules: a retried redemption (or adjustment) whose
        points were spent since is a duplicate, not "insufficient balance"; a repeated
        reversal is the duplicate of the first. Only a refused write needs the lookup — one
        that applies meets its stored original at commit — so a write that succeeds costs
        no extra query."""
        judged = [i for i in sorted(self.refused) if isinstance(self.answers.get(i), PerkamoError)]
        keys = frozenset(k for i in judged if (k := self.commands[i].key()) is not None)
        if keys:
            taken = await self._judge([self.commands[i] for i in judged], keys)
            for i in judged:
                key = self.commands[i].key()
                if key is not None and key in taken:
                    self.answers[i] = taken[key]
        return self._answers()

    # -- inside -----------------------------------------------------------------------------

    def _answers(self) -> list[object]:
        unsettled = PerkamoError(
            Code.OVERLOADED,
            "This profile is being written by another server process too; retry with the "
            "same transaction_id.",
        )
        return [self.answers.get(i, unsettled) for i in range(len(self.commands))]

    def _record(
        self, todo: list[int], staged: Staged, verdict: Verdict
    ) -> list[tuple[int, OverLimit]]:
        """What a round's verdict makes certain: the answers it settles (returns the
        writes over a limit, still to settle) and, once committed, the new state."""
        self.rounds += 1
        committed = verdict.status is Status.COMMITTED
        staged.reservations.settle(committed)
        self.actor.failed(staged.failed)
        over: list[tuple[int, OverLimit]] = []
        for i, step in zip(todo, staged.steps, strict=True):
            if isinstance(step.answer, OverLimit):
                over.append((i, step.answer))
            elif committed or not step.needs_commit:
                self.answers[i] = step.answer
                refusal = isinstance(step.answer, PerkamoError)
                if refusal and self.commands[i].namespace is not None:
                    self.refused.add(i)
        if committed:
            self.actor.adopt(staged)
        return over

    async def _answer_over_limit(self, over: list[tuple[int, OverLimit]]) -> None:
        """Usage refusals. A duplicate of a stored write is answered as such, never 429. A
        limit filled by other profiles' reservations was not certainly reached (one may be
        a duplicate and be released, maybe already since the refusal): wait until none is
        in flight, then stage the write once more before refusing it."""
        keys = frozenset(k for i, _ in over if (k := self.commands[i].key()) is not None)
        self._answer_taken(await self._judge([self.commands[i] for i, _ in over], keys))
        usage, space_id = self.actor.services.usage, self.actor.space_id
        for i, refusal in over:
            if i in self.answers:
                continue
            if i not in self.waited:
                self.waited.add(i)
                period = period_of(refusal.moment)
                with trio.move_on_after(_USAGE_WAIT):
                    await usage.wait_until_settled(space_id, period, refusal.meter)
                # Refused only on a count read from storage after this process settled.
                await usage.refresh(space_id, period)
                continue  # staged again in the next round
            self.answers[i] = limit_exceeded(refusal.meter, refusal.moment)

    async def _judge(
        self,
        commands: list[Write],
        taken: frozenset[TransactionKey],
        *,
        refused_at_commit: bool = False,
    ) -> dict[TransactionKey, object]:
        actor = self.actor
        return await judge_taken(
            actor.services.db, actor.space_id, actor.user_id, commands, taken,
            refused_at_commit=refused_at_commit,
        )  # fmt: skip

    def _answer_taken(self, taken: dict[TransactionKey, object]) -> None:
        for i, command in enumerate(self.commands):
            key = command.key()
            if i not in self.answers and key is not None and key in taken:
                self.answers[i] = taken[key]
