"""The one way to a profile: ``ask(key, command) -> R`` and ``ask_many``, typed by the
command. A command goes to the profile's mailbox here, or to the member owning its shard
(forwarded; docs/architecture.md "Several processes and nodes"), with what is left of the
request's deadline — never a fresh one.

Answers are values: a refusal is a PerkamoError (raised by ``ask``, returned per item by
``ask_many``). Failures below (a full mailbox, a full server, a closing system, an actor
that raised, storage trouble) become their API codes through ``perkamo.failures.classify``;
a deadline passed becomes 503 here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TypeVar, cast

import trio

from actors import ActorError, ActorFailed, ActorSystem, ActorSystemClosed, Reply
from perkamo.cluster.links import ForwardedReply
from perkamo.cluster.node import Cluster
from perkamo.errors import Code, PerkamoError
from perkamo.failures import classify
from perkamo.profiles.actor import ProfileKey
from perkamo.profiles.commands import AnyCommand, Command

R = TypeVar("R")
Pending = Reply[object] | ForwardedReply  # a message admitted here, or sent to its owner
_WAITING = object()


class Gateway:
    """Routes profile commands (see the module docstring). ``deadline()`` is when the
    request being served must have its answer; ``storage_ready()`` tells a late answer
    waiting for storage (503 storage_unavailable) from one waiting behind other work."""

    def __init__(
        self,
        actors: ActorSystem[ProfileKey, AnyCommand, object],
        cluster: Cluster,
        deadline: Callable[[], float],
        storage_ready: Callable[[], bool],
    ) -> None:
        self.actors = actors
        self.cluster = cluster
        self.deadline = deadline
        self._storage_ready = storage_ready

    async def ask(
        self, key: ProfileKey, command: Command[R], *, deadline: float | None = None
    ) -> R:
        """The command's answer; raises the PerkamoError it was refused with."""
        (answer,) = await self.ask_many([(key, command)], deadline=deadline)
        if isinstance(answer, PerkamoError):
            try:
                raise answer
            finally:  # the traceback holds this frame: no cycle back to the exception
                del answer
        return answer

    async def ask_many(
        self, items: Sequence[tuple[ProfileKey, Command[R]]], *, deadline: float | None = None
    ) -> list[R | PerkamoError]:
        """Each command's answer or refusal, in order; one deadline for all. Commands to
        one profile are applied in list order; the idle profiles served here start
        together (profiles/cohort.py)."""
        deadline = self.deadline() if deadline is None else deadline
        admitted = self.submit_many(items, deadline)
        pending = [p for p in admitted if not isinstance(p, PerkamoError)]
        writes = any(command.writes for _, command in items)
        answers = iter(await self.outcomes(pending, writes=writes, deadline=deadline))
        return [p if isinstance(p, PerkamoError) else cast(R, next(answers)) for p in admitted]

    def submit_many(
        self, items: Sequence[tuple[ProfileKey, AnyCommand]], deadline: float
    ) -> list[Pending | PerkamoError]:
        """Admit each message now, in order: per item its pending answer, or the 503 that
        refused it (a full mailbox, the admission bound, a shutdown)."""
        out: dict[int, Pending | PerkamoError] = {}
        here: list[int] = []
        for i, (key, message) in enumerate(items):
            try:
                forwarded = self._forward(key, message, deadline)
            except PerkamoError as exc:
                out[i] = exc.with_traceback(None)
                continue
            if forwarded is None:
                here.append(i)
            else:
                out[i] = forwarded
        local = self.actors.ask_many_nowait([items[i] for i in here])
        for i, reply in zip(here, local, strict=True):
            out[i] = classify(reply) if isinstance(reply, ActorError) else reply
        return [out[i] for i in range(len(items))]

    def submit_here(self, key: ProfileKey, message: AnyCommand) -> Reply[object]:
        """Admit a message to the profile's mailbox in this process."""
        try:
            return self.actors.ask_nowait(key, message)
        except ActorError as exc:
            raise classify(exc) from None

    def serve_forwarded(
        self, items: Sequence[tuple[ProfileKey, AnyCommand]]
    ) -> list[ServedHere | PerkamoError]:
        """Admit messages another member forwarded (always here: never forwarded again),
        in order: per message what tells its answer, or the 503 that refused it."""
        out: list[ServedHere | PerkamoError] = []
        for key, message in items:
            try:
                out.append(ServedHere(self, self.submit_here(key, message), message.writes))
            except PerkamoError as exc:
                out.append(exc.with_traceback(None))
        return out

    def _forward(self, key: ProfileKey, message: AnyCommand, deadline: float) -> Pending | None:
        """The message sent to the member owning its shard; None: it is served here."""
        if not self.cluster.peers:
            return None
        local = partial(self.submit_here, key, message)
        seconds = deadline - trio.current_time()
        return self.cluster.forward(key, message, seconds, local)

    async def outcomes(
        self, replies: Sequence[Pending], *, writes: bool, deadline: float
    ) -> list[object]:
        """Wait (bounded, one deadline for all) for admitted messages' answers; each is its
        answer or the PerkamoError it failed with. A message still waiting when the time
        is up is withdrawn, so it is certainly not applied (503); one already being applied
        has an unknown outcome."""
        answers: list[object] = [_WAITING] * len(replies)
        defect = Code.OUTCOME_UNKNOWN if writes else Code.INTERNAL_ERROR
        with trio.move_on_at(deadline):
            await trio.lowlevel.checkpoint_if_cancelled()
            for i, reply in enumerate(replies):
                try:
                    # Answers that arrived together are read without a checkpoint each.
                    if isinstance(reply, Reply) and reply.done:
                        answers[i] = reply.result()
                    else:
                        answers[i] = await reply.wait()
                except (ActorFailed, ActorSystemClosed) as exc:
                    answers[i] = classify(exc, defect=defect)
        for i, reply in enumerate(replies):
            if answers[i] is _WAITING:
                answers[i] = self.late(reply, writes=writes)
        return answers

    def late(self, reply: Pending, *, writes: bool) -> PerkamoError:
        if writes and not reply.withdraw():
            return PerkamoError(Code.OUTCOME_UNKNOWN)
        reply.withdraw()
        if not self._storage_ready():  # it waited for storage, not behind other work
            return PerkamoError(Code.STORAGE_UNAVAILABLE, "Storage is unavailable; not applied.")
        return PerkamoError(
            Code.OVERLOADED, "The request waited too long and was not applied; retry shortly."
        )


class ServedHere:
    """A forwarded message admitted here (cluster/server.py's ``Admitted``): its answer is
    told by a callback, so the owner spends no task per forwarded message."""

    __slots__ = ("_gateway", "_reply", "_writes")

    def __init__(self, gateway: Gateway, reply: Reply[object], writes: bool) -> None:
        self._gateway = gateway
        self._reply = reply
        self._writes = writes

    def when_answered(self, callback: Callable[[object], None]) -> None:
        reply, writes = self._reply, self._writes

        def settled() -> None:
            try:
                answer = reply.result()
            except Exception as exc:  # an actor that failed, a closing system
                defect = Code.OUTCOME_UNKNOWN if writes else Code.INTERNAL_ERROR
                answer = classify(exc, defect=defect)
            callback(answer)

        reply.when_settled(settled)

    def give_up(self) -> PerkamoError:
        return self._gateway.late(self._reply, writes=self._writes)
