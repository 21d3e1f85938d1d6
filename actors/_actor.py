"""What the actor system drives, and what it reports."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

K = TypeVar("K", bound=Hashable)
M = TypeVar("M")
R = TypeVar("R")
M_contra = TypeVar("M_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)


class Actor(Protocol[M_contra, R_co]):
    """What the runtime drives. ``receive`` gets every message waiting in the mailbox (up to
    the system's ``batch_limit``), in arrival order, and returns one reply per message in the
    same order. Raising fails every caller of that batch and discards the actor."""

    async def receive(self, messages: Sequence[M_contra]) -> Sequence[R_co]: ...


# Activates the actor for a key: loads its state before it handles anything.
ActorFactory = Callable[[K], Awaitable[Actor[M, R]]]


@dataclass(frozen=True, slots=True)
class SystemStatistics:
    resident: int
    running: int
    queued: int  # waiting in mailboxes
    pending: int  # admitted and not yet answered (queued, or in a batch being handled)
    max_pending: int
    answered: int  # messages handled (replied, failed or withdrawn) since the start
    max_mailbox_depth: int
    activations: int
    passivations: int
    failures: int
    messages: int
