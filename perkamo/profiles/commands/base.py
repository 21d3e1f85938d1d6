"""What a profile command is: everything the runtime needs to know about one kind of write
(or read) of a profile, in one class — its idempotency namespace, what it meters, how it is
staged through the pure engine, how a taken transaction id is judged, and how its logged
row is replayed. The runtime (staging, rounds, idempotency, replay, back-tests, the
cluster's wire) dispatches on this interface only; a new kind of write is one module
beside this one, its log table (storage/log_tables.py) and a migration.

Commands are msgspec Structs tagged by ``kind``, so that ``Message`` (commands/__init__.py)
is one tagged union: the cluster's frames carry them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

import msgspec

from perkamo.errors import Code, PerkamoError
from perkamo.program import ProfileState, Program
from perkamo.program.evaluation import copy_state
from perkamo.program.json_walk import JsonObject
from perkamo.program.outcome import BreakdownEntry, Delta, LevelState, Settlement, Unlocked
from perkamo.program.returns import EventRecord
from perkamo.webhooks.payloads import settlement_deliveries
from storage import AuditRow, OutboxRow
from storage.history import HistoryRow, StoredWrite

if TYPE_CHECKING:
    from perkamo.webhooks import SpaceHook

R = TypeVar("R", covariant=True)  # only ever answered, never taken
TransactionKey = tuple[str, str]  # (namespace, transaction id)

_encoder = msgspec.json.Encoder(decimal_format="number")


def encode_json(value: object) -> str:
    return _encoder.encode(value).decode()


class Written(msgspec.Struct, frozen=True, array_like=True):
    """The answer to a logged write: its JSON exactly as the client receives it, which is
    also what the log keeps (a retry is answered these bytes, with ``duplicate`` set)."""

    body: msgspec.Raw
    duplicate: bool = False


class Command(msgspec.Struct, Generic[R], tag_field="kind", frozen=True, kw_only=True):
    """A message to one profile's actor, answered with an ``R`` (or refused with a
    PerkamoError, which the actor answers rather than raises: one bad write never fails
    its neighbours)."""

    namespace: ClassVar[str | None] = None  # idempotency namespace; None: no transaction id
    writes: ClassVar[bool] = True  # False: a read, answered from the committed state
    needs_profile: ClassVar[bool] = False  # refused with profile_not_found on a new profile
    meter: ClassVar[str | None] = None  # the usage meter an applied one adds one to
    lookup: ClassVar[str | None] = None  # a namespace whose originals staging must read first
    counted: ClassVar[bool] = False  # an event of a back-test's report
    activity: ClassVar[bool] = True  # moves the profile's ``updated_at`` (a tick does not)
    answer_type: ClassVar[object] = None  # R, for decoding an answer that crossed the wire
    change: ClassVar[str | None] = (
        None  # what a live stream calls a committed one (docs/api.md "The browser half")
    )
    source: ClassVar[str] = (
        "server"  # who sent it: "client" for a browser (docs/api.md "The browser half")
    )

    received_at: datetime
    limits: JsonObject = {}  # the Space's usage limits when it was received
    transaction_id: str | None = None  # required by the kinds that have a namespace

    def key(self) -> TransactionKey | None:
        """The idempotency key, if this kind has one."""
        tx = self.transaction_id
        return None if self.namespace is None or tx is None else (self.namespace, tx)

    def lookup_key(self) -> TransactionKey | None:
        """The stored original staging needs (``lookup``), if any."""
        tx = self.transaction_id
        return None if self.lookup is None or tx is None else (self.lookup, tx)

    def stage(self, draft: Draft, position: int) -> R:
        """Apply to ``draft`` (its rows join the unit; the answer stands if it commits).
        Raises PerkamoError for a refusal: nothing staged, the id not used."""
        raise NotImplementedError

    def judge(self, user_id: str, original: StoredWrite) -> R | PerkamoError:
        """The answer to this command when its transaction id is already stored."""
        raise NotImplementedError

    def imported(
        self, user_id: str, known: StoredWrite, state: ProfileState, program: Program
    ) -> R | PerkamoError:
        """The answer when another system already applied this id (``known.imported``,
        storage/known.py), on the profile as committed (``state``). Only the namespaces
        ids can be imported into answer otherwise."""
        return conflict(known, str(self.__struct_config__.tag))

    @classmethod
    def replay(cls, row: HistoryRow, run: Replay) -> Replayed:
        """Re-apply a logged row of this kind to ``run`` (pure). Raises PerkamoError when
        the program ``run`` is replayed with refuses it."""
        raise NotImplementedError


class Unchanged(Exception):
    """Raised by ``stage`` for a command answered without writing anything (a tick that
    finds nothing due): ``answer`` stands, nothing is committed for it."""

    def __init__(self, answer: object) -> None:
        super().__init__("nothing to write")
        self.answer = answer


@dataclass(slots=True)
class Draft:
    """The unit being staged: the rows one batch of a profile's writes adds, and the
    profile as the writes so far left it."""

    space_id: int
    user_id: str
    version: int  # the version the write being staged commits (its rows carry it: replay)
    program: Program
    hook: SpaceHook
    traits: JsonObject
    state: ProfileState
    exists: bool
    # The stored originals this batch's commands looked up (``Command.lookup``).
    found: dict[TransactionKey, StoredWrite] = field(default_factory=dict)
    rows: dict[str, list[object]] = field(default_factory=dict)  # per log table
    outbox: list[OutboxRow] = field(default_factory=list)
    audits: list[AuditRow] = field(default_factory=list)
    # What the profile document's recent lists gain once the unit commits: (list, JSON).
    recent: list[tuple[str, bytes]] = field(default_factory=list)
    stale_recent: bool = False  # a write changed entries already listed: read them again

    def add(self, table: str, row: object) -> None:
        self.rows.setdefault(table, []).append(row)

    def audit(
        self, actor: str | None, action: str, target: str, reason: str, details: JsonObject,
        at: datetime,
    ) -> None:  # fmt: skip
        """An audit-log row committed with the write (a support operation's), if ``actor``
        asked for one (the API, the console and the CLI do; imports do not)."""
        if actor is not None:
            self.audits.append(AuditRow(
                actor, action, self.space_id, target, reason, encode_json(details), at
            ))  # fmt: skip


@dataclass(slots=True)
class Replay:
    """A profile being replayed from its log (replay, verify, back-tests)."""

    state: ProfileState
    traits: JsonObject
    program: Program
    refused: set[str] = field(default_factory=set)  # redemptions this run could not afford
    # What this run's events changed, by (source, transaction id): what returning one takes back
    # (a candidate program's run takes back its own awards, not the recorded ones).
    events: dict[tuple[str, str], EventRecord] = field(default_factory=dict)

    def fork(self, program: Program) -> Replay:
        """Another run from this one's state on (its own copy), with ``program``."""
        return Replay(copy_state(self.state), dict(self.traits), program, set(self.refused),
                      dict(self.events))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Replayed:
    """What one replayed write changed (the run's state and traits are updated in place)."""

    delta: list[Delta] = field(default_factory=list)
    breakdown: list[BreakdownEntry] = field(default_factory=list)
    unlocked: list[Unlocked] = field(default_factory=list)
    pending: list[Delta] = field(default_factory=list)
    settled: Settlement | None = None


def announce_settled(
    draft: Draft,
    settlement: Settlement,
    wallet_state: dict[str, Decimal],
    level: LevelState | None,
    at: datetime,
    subject: str | None,
) -> None:
    """The ``points.released`` / ``points.expired`` webhooks of what settling changed."""
    if draft.hook.enabled and (settlement.released or settlement.expired):
        draft.outbox.extend(settlement_deliveries(
            draft.hook, draft.space_id, draft.user_id, settlement, draft.program, wallet_state,
            level, at, subject,
        ))  # fmt: skip


def duplicate(stored: str, shape: type[msgspec.Struct]) -> Written:
    """A stored answer as the answer to its retry: the same, with ``duplicate: true``."""
    original = msgspec.json.Decoder(shape, float_hook=Decimal).decode(stored)
    again = msgspec.structs.replace(original, duplicate=True)
    return Written(msgspec.Raw(_encoder.encode(again)), duplicate=True)


def not_found(user_id: str) -> PerkamoError:
    return PerkamoError(Code.PROFILE_NOT_FOUND, f"No profile with user_id {user_id!r}.")


def conflict(original: StoredWrite, kind: str) -> PerkamoError:
    return PerkamoError(
        Code.IDEMPOTENCY_CONFLICT,
        f"transaction_id {original.transaction_id!r} was already used for a different "
        f"{kind} (its user or payload differ).",
    )
