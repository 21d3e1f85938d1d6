"""The profile actor: owns one profile, applies its writes in order, and answers only after
the group commit has made the answer durable.

Every message already waiting in the mailbox is handled as one batch: consecutive writes are
staged as one unit (their rows and one snapshot) and share a commit; a read answers from the
committed state. A unit refused at commit is settled write by write — a taken transaction
id is answered from the stored original (duplicate or conflict), a stale version (another
process wrote the profile) reloads and re-applies — and the rest is staged again.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import trio

from perkamo.configuration import ProgramCatalog
from perkamo.errors import Code, PerkamoError
from perkamo.profiles.history import RECENT, RecentHistory
from perkamo.profiles.idempotency import judge_taken
from perkamo.profiles.messages import (
    Adjust,
    Answer,
    Message,
    ProfileKey,
    ProfileView,
    Read,
    Redeem,
    Reverse,
    TransactionKey,
    Write,
    transaction_of,
)
from perkamo.profiles.reservations import Reservations
from perkamo.profiles.snapshot import Snapshot
from perkamo.profiles.staging import OverLimit, Staged, stage
from perkamo.profiles.usage import UsageLedger, limit_exceeded, period_of
from perkamo.program import Program
from perkamo.webhooks import SpaceHook, WebhookRegistry
from storage import CommitOutcomeUnknown, Database, GroupCommitWriter, Status, Verdict
from storage.profile_loader import ProfileLoader
from storage.profiles import ProfileRow, StoredRedemption, find_redemptions, read_profile

# Rounds of staging one batch may take: a stale version, a taken id or a usage wait each
# costs one. Two processes racing on one hot profile settle in a few; past this the writes
# answer 503 (retry with the same ids) instead of holding the mailbox.
_MAX_ROUNDS = 8
_STALE_BACKOFF = 0.004  # seconds × round, randomised, between rounds lost to a version race
_USAGE_WAIT = 2.0  # at most this long for other profiles' reservations of a full meter
_COMMITTED = Verdict(Status.COMMITTED)


class WriteJob:
    """One batch of writes on its way to certain answers: what each round settled."""

    __slots__ = ("answers", "messages", "refused", "rounds", "waited")

    def __init__(self, messages: list[Write]) -> None:
        self.messages = messages
        self.answers: dict[int, Answer] = {}
        self.waited: set[int] = set()  # refused over a limit once, waited, staged again
        self.refused: set[int] = set()  # redemptions refused without a commit
        self.rounds = 0

    def todo(self) -> list[int]:
        return [i for i in range(len(self.messages)) if i not in self.answers]


class ProfileServices:
    """What every profile actor shares: storage, the writer, the programs, the meters."""

    def __init__(
        self,
        db: Database,
        loader: ProfileLoader,
        writer: GroupCommitWriter,
        programs: ProgramCatalog,
        usage: UsageLedger,
        webhooks: WebhookRegistry,
        deliveries_committed: Callable[[], None],
        history: RecentHistory | None = None,
    ) -> None:
        self.db = db
        self.loader = loader
        self.writer = writer
        self.programs = programs
        self.usage = usage
        self.webhooks = webhooks
        self.deliveries_committed = deliveries_committed
        self.history = history if history is not None else RecentHistory()

    async def committed(self, key: ProfileKey, resident: object | None) -> Snapshot:
        """A profile's committed snapshot: the resident actor's, or storage's (``resident``
        is the actor the system holds for ``key``, if any). Never waits behind writes."""
        if isinstance(resident, ProfileActor) and not resident.reloading:
            return resident.snapshot
        return Snapshot.from_row(await self.loader.load(*key))

    async def activate(self, key: ProfileKey) -> ProfileActor:
        return self.actor(key, await self.loader.load(*key))

    def actor(self, key: ProfileKey, row: ProfileRow | None) -> ProfileActor:
        """The actor for ``key``, from its stored row (None: not stored yet)."""
        return ProfileActor(self, key[0], key[1], Snapshot.from_row(row))


class ProfileActor:
    def __init__(
        self, services: ProfileServices, space_id: int, user_id: str, snapshot: Snapshot
    ) -> None:
        self._services = services
        self._space_id = space_id
        self._user_id = user_id
        self._snapshot = snapshot
        self._reload = False  # a write failed unexpectedly: trust storage, not memory

    @property
    def space_id(self) -> int:
        return self._space_id

    @property
    def snapshot(self) -> Snapshot:
        """The profile as last committed."""
        return self._snapshot

    @property
    def reloading(self) -> bool:
        return self._reload

    def takes_together(self, messages: Sequence[Message]) -> bool:
        """Whether this batch is one unit of writes that needs nothing from storage to be
        staged (no read, no reversal, no repeated id, no reload): what a cohort stages
        beside other profiles' batches (cohort.py)."""
        if self._reload:
            return False
        if any(isinstance(m, Read | Reverse) for m in messages):
            return False
        return _unit_end(messages, 0) == len(messages)

    async def receive(self, messages: Sequence[Message]) -> list[Answer]:
        if self._reload:
            row = await self._services.loader.load(self._space_id, self._user_id)
            self._snapshot, self._reload = Snapshot.from_row(row), False
        answers: list[Answer] = []
        start = 0
        while start < len(messages):
            if isinstance(messages[start], Read):
                answers.append(await self._read())
                start += 1
                continue
            end = _unit_end(messages, start)
            writes = [m for m in messages[start:end] if not isinstance(m, Read)]
            answers.extend(await self._write(writes))
            start = end
        return answers

    # -- reads ---------------------------------------------------------------------------------

    async def _read(self) -> ProfileView | None:
        """The committed profile: from memory while no other process writes profiles
        (history.py); otherwise from storage, bringing along a newer snapshot another
        process committed since this actor loaded it, in the same query."""
        key = (self._space_id, self._user_id)
        history = self._services.history
        kept = history.read(key, self._snapshot.version) if self._snapshot.exists else None
        if kept is None:
            epoch = history.epoch
            fresher, events, redemptions, adjustments = await self._services.db.run(
                read_profile, self._space_id, self._user_id, RECENT, self._snapshot.version
            )
            if fresher is not None:
                self._snapshot = Snapshot.from_row(fresher)
            if not self._snapshot.exists:
                return None
            version = self._snapshot.version
            kept = history.keep(key, version, events, redemptions, adjustments, epoch)
        snap = self._snapshot
        assert snap.created_at is not None and snap.updated_at is not None
        return ProfileView(snap.traits(), snap.state(), snap.created_at, snap.updated_at, *kept)

    # -- writes --------------------------------------------------------------------------------

    async def _write(self, messages: list[Write]) -> list[Answer]:
        """Answer every write once its fate is certain (see the module docstring)."""
        job = WriteJob(messages)
        for period in {period_of(m.received_at) for m in messages}:
            await self._services.usage.load(self._space_id, period)
        await self.rounds(job)
        return await self.conclude(job)

    async def rounds(self, job: WriteJob) -> None:
        """Stage, commit and settle until every write of ``job`` is answered, or it used
        its rounds."""
        while job.rounds < _MAX_ROUNDS and (todo := job.todo()):
            staged = await self._stage([job.messages[i] for i in todo])
            verdict = (
                await self._services.writer.commit(staged.unit) if staged.writes else _COMMITTED
            )
            await self.settle(job, todo, staged, verdict)

    async def settle(
        self, job: WriteJob, todo: list[int], staged: Staged, verdict: Verdict
    ) -> None:
        """One round's outcome: the answers it made certain, and what the next round needs
        (the stored originals of taken ids, a reload, a recount)."""
        round_ = job.rounds
        over = self._record(job, todo, staged, verdict)
        messages, answers = job.messages, job.answers
        if verdict.status is Status.COMMITTED:
            if over:
                await self._answer_over_limit(over, messages, answers, job.waited)
        elif verdict.status is Status.CONFLICT:
            pending = [messages[i] for i in todo if i not in answers]
            taken = await self._judge(pending, verdict.taken, refused_at_commit=True)
            self._answer_taken(messages, answers, taken)
        elif verdict.status is Status.STALE:
            # Another process wrote this profile: re-apply on its state, after a
            # randomised pause so that two racing processes do not collide again.
            row = await self._services.loader.load(self._space_id, self._user_id)
            self._snapshot = Snapshot.from_row(row)
            await trio.sleep(random.uniform(0, _STALE_BACKOFF * (round_ + 1)))
        elif verdict.status is Status.OVER_LIMIT:
            # Other server processes filled a limit this one's count had room in:
            # count again from storage, then stage again (refused if it is full).
            await self._recount(messages, todo)
        elif verdict.status is Status.UNAVAILABLE:
            down = PerkamoError(
                Code.STORAGE_UNAVAILABLE,
                "Storage is unavailable; retry with the same transaction_id.",
            )
            answers.update({i: down for i in todo if i not in answers})
        else:
            raise CommitOutcomeUnknown("the commit outcome of this profile's writes is unknown")

    def settle_committed_now(self, job: WriteJob, todo: list[int], staged: Staged) -> bool:
        """``settle`` for a round whose unit committed, when it needs no wait (no write over
        a limit): True when done, False when nothing was done (``settle`` it instead)."""
        if any(isinstance(step.answer, OverLimit) for step in staged.steps):
            return False
        self._record(job, todo, staged, _COMMITTED)
        return True

    def answers_now(self, job: WriteJob) -> list[Answer] | None:
        """The answers of a settled job, when certain without storage (else ``conclude``)."""
        return None if job.refused or job.todo() else self._answers(job)

    def _record(
        self, job: WriteJob, todo: list[int], staged: Staged, verdict: Verdict
    ) -> list[tuple[int, OverLimit]]:
        """What a round's verdict makes certain: the answers it settles (returns the
        writes over a limit, still to settle) and, once committed, the new state."""
        job.rounds += 1
        messages, answers = job.messages, job.answers
        staged.reservations.settle(verdict.status is Status.COMMITTED)
        self._reload = self._reload or staged.failed
        over: list[tuple[int, OverLimit]] = []
        for i, step in zip(todo, staged.steps, strict=True):
            if isinstance(step.answer, OverLimit):
                over.append((i, step.answer))
            elif verdict.status is Status.COMMITTED or not step.needs_commit:
                answers[i] = step.answer
                if not step.needs_commit and isinstance(messages[i], Redeem | Adjust | Reverse):
                    job.refused.add(i)
        if verdict.status is Status.COMMITTED:
            self._adopt(staged)
        return over

    async def conclude(self, job: WriteJob) -> list[Answer]:
        if job.refused:
            await self._judge_refused(job.messages, job.answers, job.refused)
        return self._answers(job)

    @staticmethod
    def _answers(job: WriteJob) -> list[Answer]:
        unsettled = PerkamoError(
            Code.OVERLOADED,
            "This profile is being written by another server process too; retry with the "
            "same transaction_id.",
        )
        return [job.answers.get(i, unsettled) for i in range(len(job.messages))]

    async def _judge_refused(
        self, messages: list[Write], answers: dict[int, Answer], refused: set[int]
    ) -> None:
        """Idempotency before business rules: a retried redemption (or adjustment) whose
        points were spent since is a duplicate, not "insufficient balance"; a repeated
        reversal is the duplicate of the first. Only a refused write needs the lookup — one
        that applies meets its stored original at commit — so a write that succeeds costs
        no extra query."""
        judged = [i for i in sorted(refused) if isinstance(answers.get(i), PerkamoError)]
        keys = frozenset(k for i in judged if (k := transaction_of(messages[i])) is not None)
        if not keys:
            return
        taken = await self._judge([messages[i] for i in judged], keys)
        for i in judged:
            key = transaction_of(messages[i])
            if key is not None and key in taken:
                answers[i] = taken[key]

    async def _stage(self, messages: list[Write]) -> Staged:
        services = self._services
        program = await services.programs.get(self._space_id)
        hook = await services.webhooks.get(self._space_id)
        reversible = None
        if ids := sorted({m.transaction_id for m in messages if isinstance(m, Reverse)}):
            found = await services.db.run(find_redemptions, self._space_id, ids)
            reversible = {r.transaction_id: r for r in found}
        return self.stage_with(messages, program, hook, reversible)

    def stage_with(
        self,
        messages: list[Write],
        program: Program,
        hook: SpaceHook,
        reversible: dict[str, StoredRedemption] | None = None,
    ) -> Staged:
        reservations = Reservations(self._services.usage, self._space_id)
        return stage(
            self._space_id, self._user_id, self._snapshot, messages, program, hook, reservations,
            reversible,
        )  # fmt: skip

    def _adopt(self, staged: Staged) -> None:
        if staged.after is not self._snapshot:
            self._services.history.committed(
                (self._space_id, self._user_id),
                self._snapshot.version,
                staged.after.version,
                staged.unit,
            )
        self._snapshot = staged.after
        if staged.unit.outbox:
            self._services.deliveries_committed()

    async def _answer_over_limit(
        self,
        over: list[tuple[int, OverLimit]],
        messages: list[Write],
        answers: dict[int, Answer],
        waited: set[int],
    ) -> None:
        """Usage refusals. A duplicate of a stored write is answered as such, never 429. A
        limit filled by other profiles' reservations was not certainly reached (one may be
        a duplicate and be released, maybe already since the refusal): wait until none is
        in flight, then stage the write once more before refusing it."""
        if not over:
            return
        keys = frozenset(k for i, _ in over if (k := transaction_of(messages[i])) is not None)
        taken = await self._judge([messages[i] for i, _ in over], keys)
        self._answer_taken(messages, answers, taken)
        usage = self._services.usage
        for i, refusal in over:
            if i in answers:
                continue
            if i not in waited:
                waited.add(i)
                period = period_of(refusal.moment)
                with trio.move_on_after(_USAGE_WAIT):
                    await usage.wait_until_settled(self._space_id, period, refusal.meter)
                # Refused only on a count read from storage after this process settled.
                await usage.refresh(self._space_id, period)
                continue  # staged again in the next round
            answers[i] = limit_exceeded(refusal.meter, refusal.moment)

    async def _recount(self, messages: list[Write], todo: list[int]) -> None:
        for period in {period_of(messages[i].received_at) for i in todo}:
            await self._services.usage.refresh(self._space_id, period)

    async def _judge(
        self,
        messages: Sequence[Write],
        taken: frozenset[TransactionKey],
        *,
        refused_at_commit: bool = False,
    ) -> dict[TransactionKey, Answer]:
        return await judge_taken(
            self._services.db,
            self._space_id,
            self._user_id,
            messages,
            taken,
            refused_at_commit=refused_at_commit,
        )

    @staticmethod
    def _answer_taken(
        messages: list[Write], answers: dict[int, Answer], taken: dict[TransactionKey, Answer]
    ) -> None:
        for i, message in enumerate(messages):
            key = transaction_of(message)
            if i not in answers and key is not None and key in taken:
                answers[i] = taken[key]


def _unit_end(messages: Sequence[Message], start: int) -> int:
    """Writes from ``start`` up to a read or a repeated transaction id (which must be judged
    against the committed earlier one)."""
    seen: set[TransactionKey] = set()
    end = start
    while end < len(messages):
        message = messages[end]
        if isinstance(message, Read):
            break
        key = transaction_of(message)
        if key is not None:
            if key in seen:
                break
            seen.add(key)
        end += 1
    return end
