"""The profile actor: owns one profile, applies its events and redemptions in order, and
answers only after the group commit has made the answer durable.

Every message already waiting in the mailbox is applied in order and staged as one unit
(their event and redemption rows plus one snapshot), so consecutive writes of one user share
a commit. If an item is refused at commit (its transaction id is taken), that item is
answered from the stored one (duplicate or conflict) and the rest are re-applied from the
committed state. Usage is reserved while staging and settled by the commit's verdict.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import msgspec

from storage import (
    CommitOutcomeUnknown,
    Database,
    EventRow,
    GroupCommitWriter,
    IdentifyRow,
    OutboxRow,
    RedemptionRow,
    SnapshotWrite,
    Status,
    Unit,
    Verdict,
)
from storage.profile_loader import ProfileLoader
from storage.profiles import (
    ProfileRow,
    StoredEvent,
    StoredRedemption,
    find_events,
    find_redemptions,
    recent_history,
)

from .canonical import FORM, request_hash
from .configuration import ProgramCatalog
from .errors import BadRequest, NotFound, PerkamoError, ServiceUnavailable
from .program import EngineEvent, ProfileState, Program, apply, apply_identify
from .program.engine import level_number
from .program.rewards import RedemptionRefused, redeem
from .usage import UsageLedger, limit_exceeded, period_of
from .webhooks import SpaceHook, WebhookRegistry, event_delivery, redemption_delivery
from .wire import EventInput

ProfileKey = tuple[int, str]  # (space_id, user_id)

RECENT = 20
_MAX_ATTEMPTS = 5

_encoder = msgspec.json.Encoder(decimal_format="number")


@dataclass(frozen=True, slots=True)
class Ingest:
    event: EventInput
    received_at: datetime
    limits: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Identify:
    traits: dict[str, Any]
    received_at: datetime
    limits: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Redeem:
    reward_key: str
    transaction_id: str
    context: dict[str, Any]
    received_at: datetime
    limits: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Read:
    pass


@dataclass(frozen=True, slots=True)
class IdentifyResult:
    traits: dict[str, Any]
    created: bool


@dataclass(frozen=True, slots=True)
class ProfileView:
    traits: dict[str, Any]
    state: ProfileState
    created_at: datetime
    updated_at: datetime
    recent_events: list[StoredEvent]
    recent_redemptions: list[StoredRedemption]


Message = Ingest | Identify | Redeem | Read
Write = Ingest | Identify | Redeem
# An event reply is the response body (a dict); failures are returned, not raised, so that
# one bad item never fails its neighbours in the batch.
Reply = dict[str, Any] | IdentifyResult | ProfileView | PerkamoError | None


@dataclass(frozen=True, slots=True)
class _OverLimit:
    """Refused for usage — unless the stored log shows it is a duplicate."""

    meter: str


@dataclass(slots=True)
class _Snapshot:
    traits: dict[str, Any]
    state: ProfileState
    version: int  # 0: not stored yet
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def from_row(cls, row: ProfileRow | None) -> _Snapshot:
        if row is None:
            return cls({}, ProfileState(), 0, None, None)
        state = msgspec.convert(row.state, ProfileState, strict=False)
        return cls(row.traits, state, row.version, row.created_at, row.updated_at)


@dataclass(slots=True)
class _Staged:
    unit: Unit
    after: _Snapshot
    answers: list[Reply | _OverLimit]  # one per message
    staged: list[bool]  # whether the message's answer depends on the commit
    reservations: list[tuple[date, str]] = field(default_factory=list)


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
    ) -> None:
        self.db = db
        self.loader = loader
        self.writer = writer
        self.programs = programs
        self.usage = usage
        self.webhooks = webhooks
        self.deliveries_committed = deliveries_committed

    async def activate(self, key: ProfileKey) -> ProfileActor:
        space_id, user_id = key
        row = await self.loader.load(space_id, user_id)
        return ProfileActor(self, space_id, user_id, _Snapshot.from_row(row))


class ProfileActor:
    def __init__(
        self, services: ProfileServices, space_id: int, user_id: str, snapshot: _Snapshot
    ) -> None:
        self._services = services
        self._space_id = space_id
        self._user_id = user_id
        self._snapshot = snapshot

    async def receive(self, messages: Sequence[Message]) -> list[Reply]:
        replies: list[Reply] = []
        start = 0
        while start < len(messages):
            if isinstance(messages[start], Read):
                replies.append(await self._read())
                start += 1
                continue
            end = self._unit_end(messages, start)
            writes = [m for m in messages[start:end] if not isinstance(m, Read)]
            replies.extend(await self._write(writes))
            start = end
        return replies

    @staticmethod
    def _unit_end(messages: Sequence[Message], start: int) -> int:
        """Writes from ``start`` up to a read or a repeated transaction id (which must be
        judged against the committed earlier one)."""
        seen: set[tuple[str, str]] = set()
        end = start
        while end < len(messages):
            message = messages[end]
            if isinstance(message, Read):
                break
            tx = _transaction(message)
            if tx is not None:
                if tx in seen:
                    break
                seen.add(tx)
            end += 1
        return end

    # -- reads ---------------------------------------------------------------------------------

    async def _read(self) -> ProfileView | None:
        snap = self._snapshot
        if snap.version == 0:
            return None
        assert snap.created_at is not None and snap.updated_at is not None
        db, space, user = self._services.db, self._space_id, self._user_id
        events, redemptions = await db.run(recent_history, space, user, RECENT)
        return ProfileView(
            snap.traits, snap.state, snap.created_at, snap.updated_at, events, redemptions
        )

    # -- writes --------------------------------------------------------------------------------

    async def _write(self, messages: list[Write]) -> list[Reply]:
        services = self._services
        replies: list[Reply] = [None] * len(messages)
        for period in {period_of(m.received_at) for m in messages}:
            await services.usage.load(self._space_id, period)
        # Idempotency before business rules: a retried redemption whose points were spent
        # since is a duplicate, not "insufficient balance".
        known = await self._judge_taken(
            frozenset(), frozenset(m.transaction_id for m in messages if isinstance(m, Redeem)),
            messages,
        )  # fmt: skip
        todo = [i for i, m in enumerate(messages) if _transaction(m) not in known]
        for i, m in enumerate(messages):
            if (tx := _transaction(m)) in known:
                replies[i] = known[tx]
        for _ in range(_MAX_ATTEMPTS):
            if not todo:
                return replies
            program = await services.programs.get(self._space_id)
            hook = await services.webhooks.get(self._space_id)
            staged = self._stage([messages[i] for i in todo], program, hook)
            if any(staged.staged):
                verdict = await services.writer.commit(staged.unit)
            else:
                verdict = Verdict(Status.COMMITTED)  # only refusals: nothing to write
            committed = verdict.status is Status.COMMITTED
            for period, meter in staged.reservations:
                services.usage.settle(self._space_id, period, meter, 1, 1 if committed else 0)
            if committed:
                self._snapshot = staged.after
                if staged.unit.outbox:
                    services.deliveries_committed()
                over = [
                    (i, answer)
                    for i, answer in zip(todo, staged.answers, strict=True)
                    if isinstance(answer, _OverLimit)
                ]
                for i, answer in zip(todo, staged.answers, strict=True):
                    if not isinstance(answer, _OverLimit):
                        replies[i] = answer
                await self._answer_over_limit(over, messages, replies)
                return replies
            # Refusals that did not depend on the commit stand.
            for i, answer, depends in zip(todo, staged.answers, staged.staged, strict=True):
                if not depends and not isinstance(answer, _OverLimit):
                    replies[i] = answer
            todo = [i for i, d in zip(todo, staged.staged, strict=True) if d or replies[i] is None]
            if verdict.status is Status.CONFLICT:
                taken = await self._judge_taken(
                    verdict.conflicts,
                    verdict.redemption_conflicts,
                    [messages[i] for i in todo],
                    refused_at_commit=True,
                )
                for i in todo:
                    if (tx := _transaction(messages[i])) in taken:
                        replies[i] = taken[tx]
                todo = [i for i in todo if replies[i] is None]
                continue
            if verdict.status is Status.STALE:
                # Another process wrote this profile: reload and re-apply on its state.
                row = await services.loader.load(self._space_id, self._user_id)
                self._snapshot = _Snapshot.from_row(row)
                continue
            if verdict.status is Status.UNAVAILABLE:
                for i in todo:
                    replies[i] = ServiceUnavailable(
                        "Storage is unavailable; retry with the same transaction_id.",
                        code="storage_unavailable",
                    )
                return replies
            raise CommitOutcomeUnknown("the commit outcome of this profile's writes is unknown")
        raise RuntimeError("profile writes did not settle")

    def _stage(self, messages: list[Write], program: Program, hook: SpaceHook) -> _Staged:
        before = self._snapshot
        usage = self._services.usage
        traits, state = before.traits, before.state
        exists = before.version > 0
        events: list[EventRow] = []
        redemptions: list[RedemptionRow] = []
        outbox: list[OutboxRow] = []
        identifies: list[IdentifyRow] = []
        version = before.version + 1  # what this unit commits; rows carry it for replay
        versions_json = _encoder.encode(program.versions).decode()
        answers: list[Reply | _OverLimit] = []
        staged: list[bool] = []
        reservations: list[tuple[date, str]] = []
        counts: dict[tuple[int, date, str], int] = {}
        last_time = before.updated_at

        def reserve(message: Write, meter: str) -> bool:
            period = period_of(message.received_at)
            if not usage.reserve(self._space_id, period, meter, 1, message.limits):
                return False
            reservations.append((period, meter))
            key = (self._space_id, period, meter)
            counts[key] = counts.get(key, 0) + 1
            return True

        def unreserve(message: Write, meter: str) -> None:
            period = period_of(message.received_at)
            reservations.remove((period, meter))
            usage.settle(self._space_id, period, meter, 1, 0)
            key = (self._space_id, period, meter)
            counts[key] -= 1
            if not counts[key]:
                del counts[key]

        for position, message in enumerate(messages):
            refusal: Reply | _OverLimit | None = None
            if isinstance(message, Redeem):
                if not exists:
                    refusal = NotFound(
                        f"No profile with user_id {self._user_id!r}.", code="profile_not_found"
                    )
                elif not reserve(message, "redemptions"):
                    refusal = _OverLimit("redemptions")
                else:
                    try:
                        state, answer = redeem(
                            state, message.reward_key, program, message.received_at, traits
                        )
                    except RedemptionRefused as exc:
                        unreserve(message, "redemptions")
                        refusal = BadRequest(exc.message, code=exc.code)
            else:
                creates = not exists and reserve(message, "profiles")
                if not exists and not creates:
                    refusal = _OverLimit("profiles")
                elif isinstance(message, Ingest) and not reserve(message, "events"):
                    if creates:
                        unreserve(message, "profiles")
                    refusal = _OverLimit("events")
            if refusal is not None:
                answers.append(refusal)
                staged.append(False)
                continue
            if isinstance(message, Ingest):
                ev = message.event
                seen = EngineEvent(ev.event, ev.context, ev.occurred_at, traits)
                level_before = level_number(state, program) if hook.enabled else None
                state, outcome = apply(state, seen, program, message.received_at)
                event_id = "evt_" + secrets.token_hex(12)
                body = {
                    "applied": True,
                    "duplicate": False,
                    "delta": outcome.delta,
                    "leveled_up": outcome.leveled_up,
                    "unlocked": outcome.unlocked,
                    "wallet_state": outcome.wallet_state,
                    "level": outcome.level,
                    "event_id": event_id,
                    "skipped": outcome.skipped,
                    "breakdown": outcome.breakdown,
                    "program_versions": program.versions,
                }
                events.append(
                    EventRow(
                        space_id=self._space_id,
                        transaction_id=ev.transaction_id,
                        user_id=self._user_id,
                        event=ev.event,
                        context=_encoder.encode(ev.context).decode(),
                        occurred_at=ev.occurred_at or message.received_at,
                        received_at=message.received_at,
                        request_hash=event_hash(ev),
                        outcome=_encoder.encode(body).decode(),
                        profile_version=version,
                        position=position,
                    )
                )
                answers.append(body)
                if hook.enabled:
                    outbox.append(
                        event_delivery(
                            hook,
                            self._space_id,
                            event_id,
                            self._user_id,
                            ev.transaction_id,
                            ev.event,
                            ev.occurred_at or message.received_at,
                            message.received_at,
                            ev.context,
                            body,
                            level_before if outcome.leveled_up else None,
                        )
                    )
            elif isinstance(message, Redeem):
                answer = {**answer, "redemption_id": "rdm_" + secrets.token_hex(12)}
                answer["program_versions"] = program.versions
                redemptions.append(
                    RedemptionRow(
                        space_id=self._space_id,
                        transaction_id=message.transaction_id,
                        user_id=self._user_id,
                        reward_key=message.reward_key,
                        context=_encoder.encode(message.context).decode(),
                        received_at=message.received_at,
                        request_hash=redemption_hash(self._user_id, message),
                        outcome=_encoder.encode(answer).decode(),
                        profile_version=version,
                        position=position,
                    )
                )
                answers.append(answer)
                if hook.enabled:
                    outbox.append(
                        redemption_delivery(
                            hook,
                            self._space_id,
                            self._user_id,
                            message.transaction_id,
                            message.context,
                            answer,
                            message.received_at,
                        )
                    )
            else:
                traits = merge_traits(traits, message.traits)
                state, _ = apply_identify(state, traits, program, message.received_at)
                identifies.append(
                    IdentifyRow(
                        self._space_id,
                        self._user_id,
                        _encoder.encode(message.traits).decode(),
                        message.received_at,
                        versions_json,
                        version,
                        position,
                    )
                )
                answers.append(IdentifyResult(traits, created=not exists))
            staged.append(True)
            exists = True
            last_time = message.received_at
        snapshot = None
        after = before
        if any(staged):
            assert last_time is not None
            snapshot = SnapshotWrite(
                space_id=self._space_id,
                user_id=self._user_id,
                traits=_encoder.encode(traits).decode(),
                state=_encoder.encode(state).decode(),
                expected_version=before.version,
                updated_at=last_time,
            )
            first = next(m for m, s in zip(messages, staged, strict=True) if s)
            after = _Snapshot(
                traits,
                state,
                before.version + 1,
                before.created_at or first.received_at,
                last_time,
            )
        unit = Unit(
            events,
            snapshot,
            redemptions=redemptions,
            usage=counts,
            outbox=outbox,
            identifies=identifies,
        )
        return _Staged(unit, after, answers, staged, reservations)

    async def _answer_over_limit(
        self,
        over: list[tuple[int, _OverLimit]],
        messages: list[Write],
        replies: list[Reply],
    ) -> None:
        """Usage refusals: a duplicate of a stored write is answered as such, never 429."""
        if not over:
            return
        events = frozenset(
            m.event.transaction_id for i, _ in over if isinstance(m := messages[i], Ingest)
        )
        taken = await self._judge_taken(events, frozenset(), [messages[i] for i, _ in over])
        for i, refusal in over:
            tx = _transaction(messages[i])
            replies[i] = taken.get(tx) or limit_exceeded(refusal.meter, messages[i].received_at)

    async def _judge_taken(
        self,
        event_ids: frozenset[str],
        redemption_ids: frozenset[str],
        messages: Sequence[Write],
        *,
        refused_at_commit: bool = False,
    ) -> dict[tuple[str, str] | None, Reply]:
        """Answer writes whose transaction id is stored: same payload → the original answer
        marked duplicate; anything else → idempotency_conflict. An id that is not stored gets
        no verdict (apply it) — unless the commit just refused it, which makes the outcome
        uncertain (503, retry)."""
        db, space = self._services.db, self._space_id
        stored_events = (
            {e.transaction_id: e for e in await db.run(find_events, space, sorted(event_ids))}
            if event_ids
            else {}
        )
        stored_redemptions = (
            {
                r.transaction_id: r
                for r in await db.run(find_redemptions, space, sorted(redemption_ids))
            }
            if redemption_ids
            else {}
        )
        verdicts: dict[tuple[str, str] | None, Reply] = {}
        for message in messages:
            original: StoredEvent | StoredRedemption | None
            if isinstance(message, Ingest) and message.event.transaction_id in event_ids:
                original = stored_events.get(message.event.transaction_id)
            elif isinstance(message, Redeem) and message.transaction_id in redemption_ids:
                original = stored_redemptions.get(message.transaction_id)
            else:
                continue
            key = _transaction(message)
            if original is None:
                if refused_at_commit:
                    verdicts[key] = ServiceUnavailable(
                        "The write could not be recorded; retry.", code="storage_unavailable"
                    )
                continue
            if isinstance(message, Ingest):
                mine = event_hash(message.event, original.hash_form)
            else:
                mine = redemption_hash(self._user_id, message, original.hash_form)
            if original.request_hash == mine:
                verdicts[key] = {**original.outcome, "duplicate": True}
            else:
                kind = "event" if isinstance(message, Ingest) else "redemption"
                verdicts[key] = BadRequest(
                    f"transaction_id {original.transaction_id!r} was already used for a "
                    f"different {kind} (its user or payload differ).",
                    code="idempotency_conflict",
                )
        return verdicts


def _transaction(message: Write) -> tuple[str, str] | None:
    """The idempotency key: namespace and transaction id (identify has none)."""
    if isinstance(message, Ingest):
        return ("event", message.event.transaction_id)
    if isinstance(message, Redeem):
        return ("redemption", message.transaction_id)
    return None


def event_hash(event: EventInput, form: int = FORM) -> bytes:
    """What idempotency compares: user, event key and canonical context (not occurred_at),
    in the canonical form of the stored hash it is compared with."""
    return request_hash(event.user_id, event.event, event.context, form=form)


def redemption_hash(user_id: str, message: Redeem, form: int = FORM) -> bytes:
    return request_hash(user_id, message.reward_key, message.context, form=form)


def merge_traits(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Shallow merge; a key whose value is ``null`` is removed."""
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged
