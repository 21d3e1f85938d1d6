"""A generic virtual-actor runtime on trio.

Actors are addressed by a hashable key, activated on their first message (the factory loads
their state before they handle anything), handle one batch of messages at a time, and are
passivated when idle or when the number of resident actors exceeds a cap. An idle resident
actor is only its object: no task and no channel exist until a message arrives.

This package is deliberately generic: it knows nothing about HTTP, storage or loyalty rules.
"""

from ._actor import Actor, ActorFactory, SystemStatistics
from ._admission import Admission
from ._cohort import Answered, Cohort
from ._envelope import Reply
from ._errors import ActorError, ActorFailed, ActorSystemClosed, MailboxFull, SystemFull
from ._future import Future, wait_all
from ._system import ActorSystem, open_actor_system

__all__ = [
    "Actor",
    "Admission",
    "ActorError",
    "ActorFactory",
    "ActorFailed",
    "ActorSystem",
    "ActorSystemClosed",
    "Answered",
    "Cohort",
    "Future",
    "MailboxFull",
    "Reply",
    "SystemFull",
    "SystemStatistics",
    "open_actor_system",
    "wait_all",
]
