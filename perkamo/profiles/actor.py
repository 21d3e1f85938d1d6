"""The profile actor: owns one profile, applies its commands in order, and answers a write
only after the group commit has made its answer durable.

Every message already waiting in the mailbox is handled as one batch: consecutive writes are
one unit (their rows and one snapshot) sharing a commit (rounds.py); a read answers from the
committed state. Answers are values — an answer or a PerkamoError per message — so one
refused write never fails its neighbours.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from perkamo.configuration import ProgramCatalog
from perkamo.profiles.commands import AnyCommand, TransactionKey, Write, writes_of
from perkamo.profiles.commands.read import ProfileView
from perkamo.profiles.history import RECENT, RecentHistory
from perkamo.profiles.rounds import Rounds
from perkamo.profiles.snapshot import Snapshot
from perkamo.profiles.staging import Staged
from perkamo.profiles.subscribers import Subscribers
from perkamo.profiles.usage import UsageLedger
from perkamo.webhooks import WebhookRegistry
from storage import Database, GroupCommitWriter
from storage.profile_loader import ProfileLoader
from storage.profiles import ProfileRow, read_profile

ProfileKey = tuple[int, str]  # (space_id, user_id)


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
        subscribers: Subscribers | None = None,
    ) -> None:
        self.db = db
        self.loader = loader
        self.writer = writer
        self.programs = programs
        self.usage = usage
        self.webhooks = webhooks
        self.deliveries_committed = deliveries_committed
        self.history = history if history is not None else RecentHistory()
        self.subscribers = subscribers if subscribers is not None else Subscribers()

    async def committed(self, key: ProfileKey, resident: ProfileActor | None) -> Snapshot:
        """A profile's committed snapshot: the resident actor's, or storage's (``resident``
        is the actor the system holds for ``key``, if any). Never waits behind writes."""
        if resident is not None and not resident.reloading:
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
        self.services = services
        self.space_id = space_id
        self.user_id = user_id
        self._snapshot = snapshot
        self._reload = False  # a write failed unexpectedly: trust storage, not memory

    @property
    def snapshot(self) -> Snapshot:
        """The profile as last committed."""
        return self._snapshot

    @property
    def reloading(self) -> bool:
        return self._reload

    def takes_together(self, messages: Sequence[AnyCommand]) -> bool:
        """Whether this batch is one unit of writes that needs nothing from storage to be
        staged (no read, no lookup, no repeated id, no reload): what a cohort stages beside
        other profiles' batches (cohort.py)."""
        if self._reload or any(not m.writes or m.lookup is not None for m in messages):
            return False
        return _unit_end(messages, 0) == len(messages)

    async def receive(self, messages: Sequence[AnyCommand]) -> list[object]:
        if self._reload:
            await self.reload()
        answers: list[object] = []
        start = 0
        while start < len(messages):
            if not messages[start].writes:
                answers.append(await self._read())
                start += 1
                continue
            end = _unit_end(messages, start)
            answers.extend(await Rounds(self, writes_of(messages[start:end])).run())
            start = end
        return answers

    # -- what the rounds change -----------------------------------------------------------------

    async def reload(self) -> None:
        """Take the profile as storage holds it (another process wrote it, or this actor's
        memory is not to be trusted)."""
        row = await self.services.loader.load(self.space_id, self.user_id)
        self._snapshot, self._reload = Snapshot.from_row(row), False

    def failed(self, failed: bool) -> None:
        """A write raised while staged: reload from storage before the next batch."""
        self._reload = self._reload or failed

    def adopt(self, staged: Staged) -> None:
        """A unit committed: its state is the profile now."""
        if staged.after is not self._snapshot:
            self.services.history.committed(
                (self.space_id, self.user_id), self._snapshot.version, staged.after.version,
                staged.recent, staged.stale_recent,
            )  # fmt: skip
        self._snapshot = staged.after
        key = (self.space_id, self.user_id)
        if staged.applied and staged.program and self.services.subscribers.watching(key):
            # Committed: live streams get each change now, in commit order (never waited on).
            self.services.subscribers.publish(key, staged.applied, staged.program)
        if staged.unit.outbox:
            self.services.deliveries_committed()

    # -- reads ---------------------------------------------------------------------------------

    async def _read(self) -> ProfileView | None:
        """The committed profile: from memory while no other process writes profiles
        (history.py); otherwise from storage, bringing along a newer snapshot another
        process committed since this actor loaded it, in the same query."""
        key = (self.space_id, self.user_id)
        history = self.services.history
        kept = history.read(key, self._snapshot.version) if self._snapshot.exists else None
        if kept is None:
            epoch = history.epoch
            fresher, events, redemptions, adjustments = await self.services.db.run(
                read_profile, self.space_id, self.user_id, RECENT, self._snapshot.version
            )
            if fresher is not None:
                self._snapshot = Snapshot.from_row(fresher)
            if not self._snapshot.exists:
                return None
            version = self._snapshot.version
            kept = history.keep(key, version, events, redemptions, adjustments, epoch)
        snap = self._snapshot
        assert snap.created_at is not None and snap.updated_at is not None
        return ProfileView(
            snap.traits(), snap.state(), snap.created_at, snap.updated_at, *kept, snap.version
        )


def _unit_end(messages: Sequence[AnyCommand], start: int) -> int:
    """Writes from ``start`` up to a read or a repeated transaction id (which must be judged
    against the committed earlier one)."""
    seen: set[TransactionKey] = set()
    end = start
    while end < len(messages):
        message = messages[end]
        if not message.writes:
            break
        key = message.key()
        if key is not None:
            if key in seen:
                break
            seen.add(key)
        end += 1
    return end


__all__ = ["ProfileActor", "ProfileKey", "ProfileServices", "Write"]
