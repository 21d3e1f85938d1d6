"""Cohorts: actors that start at the same moment, run in one task.

Actors admitted while idle in one scheduler pass (one batch request's profiles, or
concurrent single messages) are activated together and handed their first batches in one
``Cohort.receive``, to share what each would pay alone: a task, a load, a commit. Each
actor's slot is released the moment its own batch is answered; one with more messages
waiting then goes on in its own runner.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from ._actor import Actor
    from ._envelope import Envelope
    from ._system import ActorSystem, Slot

K_contra = TypeVar("K_contra", bound=Hashable, contravariant=True)
M = TypeVar("M")
R = TypeVar("R")

# Called once per batch of a cohort, as soon as that batch is answered: its replies (one
# per message) or the exception that fails it alone and discards its actor.
Answered = Callable[[int, Sequence[R] | Exception], None]


class Cohort(Protocol[K_contra, M, R]):
    """Optional for an actor system: runs several actors' batches in one task.

    ``activate`` makes the actors for many keys at once (an actor, or the exception its
    activation failed with, per key). ``receive`` handles one batch for each of several
    actors, and calls ``answered(i, result)`` exactly once per batch, as soon as that batch
    is answered: a batch that takes longer must not hold the others' answers. Each batch
    must be handled exactly as its actor's own ``receive`` would have.
    """

    async def activate(self, keys: Sequence[K_contra]) -> Sequence[Actor[M, R] | Exception]: ...

    async def receive(
        self, batches: Sequence[tuple[Actor[M, R], Sequence[M]]], answered: Answered[R]
    ) -> None: ...


async def run_cohort(
    system: ActorSystem[Any, M, R], cohort: Cohort[Any, M, R], slots: list[Slot[Any, M, R]]
) -> None:
    """Activate the slots' actors together and hand one batch of each to one
    ``cohort.receive``; each slot is released as soon as its batch is answered."""
    ready: list[int] = []  # positions in ``slots`` of the batches handed over, in order
    batches: dict[int, list[Envelope[M, R]]] = {}  # by position, until answered
    waiting = set(range(len(slots)))  # positions not released yet

    def release(position: int) -> None:
        waiting.discard(position)
        system.release(slots[position])

    def answered(i: int, result: Sequence[R] | Exception) -> None:
        position = ready[i]
        batch = batches.pop(position, None)
        if batch is not None:  # else answered already
            system.deliver(slots[position], batch, result)
            release(position)

    try:
        idle = [slot for slot in slots if slot.actor is None]
        if idle:
            await _activate(system, cohort, idle)
        for position, slot in enumerate(slots):
            if slot.actor is not None and (batch := system.take(slot, system.batch_limit)):
                batches[position] = batch
                ready.append(position)
            else:
                release(position)  # failed to activate, or every message withdrawn
        if not ready:
            return
        work: list[tuple[Actor[M, R], list[M]]] = []
        for p in ready:
            actor = slots[p].actor
            assert actor is not None  # taken above only from activated slots
            work.append((actor, [e.message for e in batches[p]]))
        try:
            await cohort.receive(work, answered)
        except Exception as exc:
            for i in range(len(ready)):
                answered(i, exc)
        else:
            for i in range(len(ready)):
                answered(i, RuntimeError("the cohort did not answer this batch"))
    finally:
        for batch in batches.values():  # cancelled mid-batch
            system.abandon(batch)
        for position in list(waiting):
            release(position)


async def _activate(
    system: ActorSystem[Any, M, R], cohort: Cohort[Any, M, R], slots: list[Slot[Any, M, R]]
) -> None:
    try:
        made: Sequence[Actor[M, R] | Exception] = await cohort.activate([s.key for s in slots])
        if len(made) != len(slots):
            raise RuntimeError("the cohort activated a wrong number of actors")
    except Exception as exc:
        made = [exc] * len(slots)
    for slot, actor in zip(slots, made, strict=True):
        if isinstance(actor, Exception):
            system.activation_failed(slot, actor)
        else:
            system.activated(slot, actor)
