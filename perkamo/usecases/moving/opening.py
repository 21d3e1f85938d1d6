"""``perkamo import-balances`` (docs/operations.md (moving a Space)): opening balances
applied through each customer's actor like any adjustment (commands/opening.py) — by the
owner of the customer's shard when several members serve the database — and known
transaction ids stored so that the old system's retries answer as imported duplicates.

A row's transaction id is ``opening:<wallet>:<sha256(user_id)>``: per customer and wallet,
whatever the file or the row's place in it, so a run that was interrupted, or a file whose
refused rows were fixed, is simply run again — nothing applies twice."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import TypeVar

import trio

from perkamo import ids
from perkamo.errors import Code, PerkamoError
from perkamo.profiles.commands import OpenBalance, Written
from perkamo.program import Program
from perkamo.program.adjustments import check_opening
from perkamo.program.json_walk import JsonObject
from perkamo.runtime import Runtime
from perkamo.usecases.moving.balances import Known, Opening, Refused
from perkamo.usecases.moving.format import MoveRefused
from storage.known import KnownRow, add_known

T = TypeVar("T")
# Rows asked of the actors together, and windows at once: the group commit is never idle
# between two, and what is in flight stays under the admission bound's floor (1,000 items:
# actors/_admission.py), so a busy server does not refuse the run's own rows.
WINDOW = 250
IN_FLIGHT = 3
KNOWN_CHUNK = 2000  # ids per transaction (each holds a brief lock on the log's inserts)
# A row answered 503 (a busy server, storage failing over) is asked again with its id, which
# makes that safe, with a growing pause: for about two minutes before it counts as refused.
_RETRIES = 24
_MAX_PAUSE = 5.0
_ANSWER_SECONDS = 30.0


@dataclass(slots=True)
class Summary:
    applied: int = 0
    duplicate: int = 0
    refused: list[Refused] = field(default_factory=list)
    notes: list[Refused] = field(default_factory=list)  # informative, not refusals

    def add(self, other: Summary) -> None:
        self.applied += other.applied
        self.duplicate += other.duplicate
        self.refused += other.refused
        self.notes += other.notes


def opening_transaction_id(wallet: str, user_id: str) -> str:
    return f"opening:{wallet}:{hashlib.sha256(user_id.encode()).hexdigest()}"


async def apply_openings(
    runtime: Runtime,
    space_id: int,
    limits: JsonObject,
    rows: Iterable[Opening | Refused],
    *,
    actor: str | None,
    done: Callable[[int], None] = lambda _: None,
) -> Summary:
    """Apply every row (a refused row is counted, the others go on)."""
    program = await runtime.programs.get(space_id)
    summary = Summary()
    limiter = trio.Semaphore(IN_FLIGHT)

    async def window(batch: list[Opening | Refused]) -> None:
        try:
            await _window(runtime, space_id, limits, program, batch, actor, summary)
            done(len(batch))
        finally:
            limiter.release()

    unreadable: MoveRefused | None = None
    async with trio.open_nursery() as nursery:
        try:  # the rows are read as they go: a file found unreadable ends the run plainly
            for batch in _chunks(rows, WINDOW):
                await limiter.acquire()
                nursery.start_soon(window, batch)
        except MoveRefused as exc:  # (raised in the nursery, it would come out as a group)
            unreadable = exc
    if unreadable is not None:
        raise unreadable
    summary.refused.sort(key=lambda r: r.number)
    return summary


async def _window(
    runtime: Runtime,
    space_id: int,
    limits: JsonObject,
    program: Program,
    batch: list[Opening | Refused],
    actor: str | None,
    summary: Summary,
) -> None:
    items: list[tuple[int, Opening]] = []
    for row in batch:
        if isinstance(row, Refused):
            summary.refused.append(row)
            continue
        try:
            check_opening(program, row.wallet, row.amount, row.earned)
        except PerkamoError as exc:
            summary.refused.append(Refused(row.number, _describe(exc)))
            continue
        items.append((row.number, row))
    if not items:
        return
    answers = await _ask(runtime, space_id, limits, [r for _, r in items], actor)
    for (number, _), answer in zip(items, answers, strict=True):
        if isinstance(answer, Written):
            if answer.duplicate:
                summary.duplicate += 1
            else:
                summary.applied += 1
        else:
            summary.refused.append(Refused(number, _describe(answer)))


async def _ask(
    runtime: Runtime,
    space_id: int,
    limits: JsonObject,
    rows: list[Opening],
    actor: str | None,
) -> list[Written | PerkamoError]:
    """Each row's answer; a 503 is asked again (with its id, so never applied twice)."""
    answers: list[Written | PerkamoError | None] = [None] * len(rows)
    todo = list(range(len(rows)))
    for attempt in range(_RETRIES):
        now = datetime.now(UTC)
        commands = [((space_id, rows[i].user_id), _command(rows[i], now, limits, actor))
                    for i in todo]  # fmt: skip
        deadline = trio.current_time() + _ANSWER_SECONDS
        got = await runtime.gateway.ask_many(commands, deadline=deadline)
        for i, answer in zip(todo, got, strict=True):
            answers[i] = answer
        todo = [i for i in todo if isinstance(answers[i], PerkamoError) and _busy(answers[i])]
        if not todo:
            break
        await trio.sleep(min(0.1 * 2**attempt, _MAX_PAUSE))
    return [a for a in answers if a is not None]


def _busy(answer: object) -> bool:
    """A refusal that says "not now" (a frozen Space is not now for a long while)."""
    return (
        isinstance(answer, PerkamoError)
        and answer.status == 503
        and answer.code is not Code.SPACE_FROZEN
    )


def _command(row: Opening, now: datetime, limits: JsonObject, actor: str | None) -> OpenBalance:
    return OpenBalance(
        transaction_id=opening_transaction_id(row.wallet, row.user_id), wallet=row.wallet,
        amount=row.amount, earned=row.earned, traits=row.traits, actor=actor,
        earned_at=row.earned_at, expires_at=row.expires_at, received_at=now, limits=limits,
    )  # fmt: skip


def _describe(exc: PerkamoError) -> str:
    return f"{exc.code.value}: {exc.message}"


async def store_known(
    runtime: Runtime,
    space_id: int,
    rows: Iterable[Known | Refused],
    *,
    done: Callable[[int], None] = lambda _: None,
) -> Summary:
    """Store the known ids (a repeated one is a duplicate; known for another customer, a
    refusal). One already in this Space's log was applied here: its retries answer that
    write, and it is noted."""
    summary = Summary()
    first: dict[tuple[str, str], Known] = {}
    for batch in _chunks(rows, KNOWN_CHUNK):
        fresh: list[Known] = []
        for row in batch:
            if isinstance(row, Refused):
                summary.refused.append(row)
                continue
            key = (row.namespace, row.transaction_id)
            earlier = first.get(key)
            if earlier is None:
                first[key] = row
                fresh.append(row)
            elif earlier.user_id == row.user_id:
                summary.duplicate += 1
            else:
                summary.refused.append(_other_user(row, earlier.user_id))
        if fresh:
            known = [KnownRow(r.namespace, r.transaction_id, r.user_id, "imp_" + ids.token_hex(12))
                     for r in fresh]  # fmt: skip
            verdicts = await runtime.db.run(add_known, space_id, known, datetime.now(UTC))
            for row, verdict in zip(fresh, verdicts, strict=True):
                _count_known(summary, row, verdict)
        done(len(batch))
    summary.refused.sort(key=lambda r: r.number)
    return summary


def _count_known(summary: Summary, row: Known, verdict: str) -> None:
    if verdict == "added":
        summary.applied += 1
    elif verdict == "known":
        summary.duplicate += 1
    elif verdict == "logged":
        summary.duplicate += 1
        summary.notes.append(Refused(
            row.number, f"{row.namespace} {row.transaction_id!r} is in this Space's log already"
            " (applied here): its retries answer that write",
        ))  # fmt: skip
    elif verdict == "frozen":
        summary.refused.append(Refused(
            row.number, "space_frozen: the Space is frozen (perkamo spaces unfreeze)"
        ))  # fmt: skip
    else:
        summary.refused.append(_other_user(row, None))


def _other_user(row: Known, user: str | None) -> Refused:
    whose = f"customer {user!r}" if user else "another customer"
    return Refused(
        row.number,
        f"idempotency_conflict: {row.namespace} {row.transaction_id!r} is known for {whose}",
    )


def _chunks(rows: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch
