"""The actor system: registry of slots, mailboxes, runners, passivation and supervision."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

import trio

from ._actor import Actor, ActorFactory, SystemStatistics
from ._cohort import Cohort, run_cohort
from ._envelope import Envelope, Reply
from ._errors import ActorError, ActorFailed, ActorSystemClosed, MailboxFull, SystemFull

K = TypeVar("K", bound=Hashable)
M = TypeVar("M")
R = TypeVar("R")


class Slot(Generic[K, M, R]):
    """One addressable actor (opaque outside the system and its runners). ``mailbox`` and
    the runner task exist only while busy; ``room`` parks senders waiting for mailbox
    room."""

    __slots__ = ("actor", "key", "last_message_at", "mailbox", "room", "running")

    def __init__(self, key: K) -> None:
        self.key = key
        self.actor: Actor[M, R] | None = None
        self.mailbox: deque[Envelope[M, R]] | None = None
        self.running = False
        self.last_message_at = 0.0
        self.room: trio.lowlevel.ParkingLot | None = None


class ActorSystem(Generic[K, M, R]):
    """Routes messages to virtual actors. Create it with :func:`open_actor_system`.

    Guarantees: messages to one key are handled in the order they were admitted, one batch at
    a time; different keys run concurrently. Mailboxes are bounded, and so is the work the
    whole system holds (``max_pending`` messages admitted and not yet answered). Runner tasks
    live in the system's own nursery, never in a caller's.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        factory: ActorFactory[K, M, R],
        *,
        mailbox_capacity: int,
        batch_limit: int,
        idle_timeout: float,
        max_resident: int,
        max_pending: int,
        cohort: Cohort[K, M, R] | None = None,
    ) -> None:
        if min(mailbox_capacity, batch_limit, max_resident, max_pending) < 1:
            raise ValueError("capacities and limits must be >= 1")
        self._nursery = nursery
        self._factory = factory
        self._cohort = cohort
        self._starting: list[Slot[K, M, R]] = []  # admitted while idle, not run yet
        self._capacity = mailbox_capacity
        self._batch_limit = batch_limit
        self._idle_timeout = idle_timeout
        self._max_resident = max_resident
        self.max_pending = max_pending  # may be changed while running (admission control)
        self._pending = 0
        self._answered = 0
        self._slots: OrderedDict[K, Slot[K, M, R]] = OrderedDict()
        self._pinned: dict[K, int] = {}  # key -> pins: never passivated for idleness or cap
        self._closed = False
        self._running = 0
        self._queued = 0
        self._max_depth = 0
        self._all_idle = trio.Event()
        self._all_idle.set()
        self._activations = 0
        self._passivations = 0
        self._failures = 0
        self._messages = 0

    # -- sending -----------------------------------------------------------------------------

    def send_nowait(self, key: K, message: M) -> None:
        """Queue ``message`` without a reply. Raises MailboxFull, SystemFull or
        ActorSystemClosed."""
        self._admit(key, Envelope(message, None), wait=False)

    async def send(self, key: K, message: M) -> None:
        """Queue ``message`` without a reply, waiting for mailbox space."""
        await self._admit_waiting(key, Envelope(message, None))

    async def ask(self, key: K, message: M) -> R:
        """Queue ``message`` (waiting for space) and wait for the actor's reply.

        Raises ActorFailed when the handler raised, ActorSystemClosed when the system is
        closing. If the caller is cancelled the message is still handled.
        """
        reply: Reply[R] = Reply()
        await self._admit_waiting(key, Envelope(message, reply))
        return await reply.wait()

    def ask_nowait(self, key: K, message: M) -> Reply[R]:
        """Admit ``message`` now (raising MailboxFull or SystemFull at once when there is no
        room) and return its reply, to be awaited with ``reply.wait()`` (or withdrawn).
        Messages admitted in a row by one task keep their order."""
        reply: Reply[R] = Reply()
        self._admit(key, Envelope(message, reply), wait=False)
        return reply

    def ask_many_nowait(self, items: Sequence[tuple[K, M]]) -> list[Reply[R] | ActorError]:
        """Admit each ``(key, message)`` in order, as ``ask_nowait`` would; per item its
        reply, or the MailboxFull / SystemFull / ActorSystemClosed that refused it. The
        idle actors among them start together, as one cohort when the system has one."""
        out: list[Reply[R] | ActorError] = []
        for key, message in items:
            try:
                out.append(self.ask_nowait(key, message))
            except (MailboxFull, SystemFull, ActorSystemClosed) as exc:
                out.append(exc)
        return out

    async def _admit_waiting(self, key: K, envelope: Envelope[M, R]) -> None:
        while True:
            slot = self._admit(key, envelope, wait=True)
            if slot is None:
                return
            if slot.room is None:
                slot.room = trio.lowlevel.ParkingLot()
            await slot.room.park()

    def _admit(self, key: K, envelope: Envelope[M, R], *, wait: bool) -> Slot[K, M, R] | None:
        """Queue the envelope; returns the full slot to wait on when ``wait`` and full."""
        if self._closed:
            raise ActorSystemClosed("the actor system is closing")
        if self._pending >= self.max_pending:
            raise SystemFull(f"{self._pending} messages are pending")
        slot = self._slots.get(key)
        if slot is None:
            slot = Slot(key)
            self._slots[key] = slot
        else:
            self._slots.move_to_end(key)
        slot.last_message_at = trio.current_time()
        if slot.mailbox is None:
            slot.mailbox = deque()
        elif len(slot.mailbox) >= self._capacity:
            if wait:
                return slot
            raise MailboxFull(key)
        slot.mailbox.append(envelope)
        self._messages += 1
        self._queued += 1
        self._pending += 1
        self._max_depth = max(self._max_depth, len(slot.mailbox))
        if not slot.running:
            slot.running = True
            self._running += 1
            if self._all_idle.is_set():
                self._all_idle = trio.Event()
            if self._cohort is None:
                self._nursery.start_soon(self._run, slot)
            else:  # run with the others that start in this scheduler pass
                self._starting.append(slot)
                if len(self._starting) == 1:
                    self._nursery.start_soon(self._start_together, self._cohort)
        self._evict_over_cap()
        return None

    # -- running -----------------------------------------------------------------------------

    async def _run(self, slot: Slot[K, M, R]) -> None:
        batch: list[Envelope[M, R]] = []
        try:
            while slot.mailbox:
                actor = slot.actor
                if actor is None:
                    try:
                        actor = await self._factory(slot.key)
                    except Exception as exc:
                        self.activation_failed(slot, exc)
                        continue
                    self.activated(slot, actor)
                batch = self.take(slot, self._batch_limit)
                if not batch:
                    continue  # every message taken was withdrawn
                result: Sequence[R] | Exception
                try:
                    result = await actor.receive([e.message for e in batch])
                except Exception as exc:
                    result = exc
                self.deliver(slot, batch, result)
                batch = []
        finally:
            self.abandon(batch)  # cancelled mid-batch: those callers must not wait forever
            self._finish(slot)

    async def _start_together(self, cohort: Cohort[K, M, R]) -> None:
        slots, self._starting = self._starting, []
        if len(slots) == 1:
            await self._run(slots[0])
        else:
            await run_cohort(self, cohort, slots)

    def activation_failed(self, slot: Slot[K, M, R], exc: Exception) -> None:
        """Fail every message waiting for an actor that could not be activated."""
        self._failures += 1
        assert slot.mailbox is not None
        self._fail_batch(slot, self.take(slot, len(slot.mailbox)), exc)

    # -- what a runner (a lone actor's, or a cohort's: _cohort.py) calls ---------------------

    @property
    def batch_limit(self) -> int:
        return self._batch_limit

    def activated(self, slot: Slot[K, M, R], actor: Actor[M, R]) -> None:
        """``slot``'s actor was made (its state loaded)."""
        slot.actor = actor
        self._activations += 1

    def deliver(
        self, slot: Slot[K, M, R], batch: list[Envelope[M, R]], result: Sequence[R] | Exception
    ) -> None:
        """A handled batch: its replies, or the failure that fails it and discards the
        actor (also when the number of replies is wrong)."""
        if not isinstance(result, Exception) and len(result) != len(batch):
            result = RuntimeError("actor returned a wrong number of replies")
        if isinstance(result, Exception):
            self._failures += 1
            slot.actor = None
            self._fail_batch(slot, batch, result)
            return
        for envelope, value in zip(batch, result, strict=True):
            if envelope.reply is not None:
                envelope.reply.resolve(value)
        self._settled(len(batch))

    def abandon(self, batch: list[Envelope[M, R]]) -> None:
        """A batch taken and never answered: the system was cancelled."""
        for envelope in batch:
            if envelope.reply is not None:
                envelope.reply.fail(ActorSystemClosed("the actor system was cancelled"))
        self._settled(len(batch))

    def release(self, slot: Slot[K, M, R]) -> None:
        """A slot whose cohort batch is done: its own runner goes on, or it stops."""
        if slot.mailbox:
            self._nursery.start_soon(self._run, slot)  # still running
        else:
            self._finish(slot)

    def _settled(self, n: int) -> None:
        self._pending -= n
        self._answered += n

    def take(self, slot: Slot[K, M, R], limit: int) -> list[Envelope[M, R]]:
        """Up to ``limit`` waiting messages, minus those their callers withdrew."""
        assert slot.mailbox is not None
        n = min(limit, len(slot.mailbox))
        batch = []
        for _ in range(n):
            envelope = slot.mailbox.popleft()
            if envelope.withdrawn:
                self._settled(1)
                continue
            envelope.take()
            batch.append(envelope)
        self._queued -= n
        if slot.room is not None:
            slot.room.unpark_all()
        return batch

    def _fail_batch(
        self, slot: Slot[K, M, R], batch: list[Envelope[M, R]], exc: BaseException
    ) -> None:
        for envelope in batch:
            if envelope.reply is not None:
                envelope.reply.fail(ActorFailed(slot.key, exc))
        self._settled(len(batch))

    def _finish(self, slot: Slot[K, M, R]) -> None:
        leftover = slot.mailbox or ()
        for envelope in leftover:  # only when cancelled: the system is going away
            self._queued -= 1
            self._settled(1)
            if envelope.reply is not None:
                envelope.reply.fail(ActorSystemClosed("the actor system was cancelled"))
        slot.mailbox = None
        slot.running = False
        if slot.room is not None:
            slot.room.unpark_all()
            slot.room = None
        self._running -= 1
        if slot.actor is None and self._slots.get(slot.key) is slot:
            del self._slots[slot.key]
        if self._running == 0:
            self._all_idle.set()
        self._evict_over_cap()

    # -- passivation -------------------------------------------------------------------------

    def _evict_over_cap(self) -> None:
        excess = len(self._slots) - self._max_resident
        if excess <= 0:
            return
        victims: list[K] = []
        for key, slot in self._slots.items():  # least recently messaged first
            if not slot.running and key not in self._pinned:
                victims.append(key)
                if len(victims) == excess:
                    break
        for key in victims:
            del self._slots[key]
        self._passivations += len(victims)

    def passivate_idle(self) -> int:
        """Passivate every actor idle for ``idle_timeout`` or longer; returns how many.

        Idle time counts from the last inbound message (replies do not refresh it).
        """
        deadline = trio.current_time() - self._idle_timeout
        stale: list[K] = []
        for key, slot in self._slots.items():
            if slot.last_message_at > deadline:
                break  # the registry is ordered by last message
            if not slot.running and key not in self._pinned:
                stale.append(key)
        for key in stale:
            del self._slots[key]
        self._passivations += len(stale)
        return len(stale)

    def pin(self, key: K) -> None:
        """Keep ``key``'s actor resident once activated: neither idleness nor the resident
        cap passivates it while pinned (pins are counted; ``passivate_matching`` still
        does, for an actor that must move). What a pin is for is the caller's business (a
        watched actor, for instance)."""
        self._pinned[key] = self._pinned.get(key, 0) + 1

    def unpin(self, key: K) -> None:
        left = self._pinned.get(key, 0) - 1
        if left > 0:
            self._pinned[key] = left
        else:
            self._pinned.pop(key, None)

    def is_pinned(self, key: K) -> bool:
        return key in self._pinned

    async def passivate_matching(self, matches: Callable[[K], bool]) -> int:
        """Passivate every actor whose key ``matches`` as soon as its mailbox is empty (the
        caller stops sending them messages first); returns how many. Bound it with a
        timeout: a matching actor that keeps receiving keeps it waiting."""
        total = 0
        while True:
            busy, idle = False, []
            for key, slot in self._slots.items():
                if matches(key):
                    if slot.running:
                        busy = True
                    else:
                        idle.append(key)
            for key in idle:
                del self._slots[key]
            self._passivations += len(idle)
            total += len(idle)
            if not busy:
                return total
            await trio.sleep(0.01)

    async def _sweep_forever(self) -> None:
        while True:
            await trio.sleep(max(self._idle_timeout / 4, 0.001))
            self.passivate_idle()

    # -- lifecycle ---------------------------------------------------------------------------

    async def drain(self) -> None:
        """Stop admitting messages and wait until every mailbox is empty."""
        self._closed = True
        await self._all_idle.wait()

    @property
    def closed(self) -> bool:
        return self._closed

    def is_resident(self, key: K) -> bool:
        return key in self._slots

    def resident(self, key: K) -> Actor[M, R] | None:
        """The activated actor for ``key``, if resident, without sending it anything (for
        a look at its state that must not queue behind its mailbox)."""
        slot = self._slots.get(key)
        return None if slot is None else slot.actor

    def statistics(self) -> SystemStatistics:
        return SystemStatistics(
            resident=len(self._slots),
            running=self._running,
            queued=self._queued,
            pending=self._pending,
            max_pending=self.max_pending,
            answered=self._answered,
            max_mailbox_depth=self._max_depth,
            activations=self._activations,
            passivations=self._passivations,
            failures=self._failures,
            messages=self._messages,
        )


@asynccontextmanager
async def open_actor_system(
    factory: ActorFactory[K, M, R],
    *,
    mailbox_capacity: int = 1000,
    batch_limit: int = 100,
    idle_timeout: float = 300.0,
    max_resident: int = 1_000_000,
    max_pending: int = 1_000_000,
    cohort: Cohort[K, M, R] | None = None,
) -> AsyncIterator[ActorSystem[K, M, R]]:
    """Open an actor system. On a normal exit it drains (every admitted message is handled);
    when the body raises or is cancelled, the runners are cancelled and their callers fail
    with ActorSystemClosed."""
    async with trio.open_nursery() as nursery:
        system: ActorSystem[K, M, R] = ActorSystem(
            nursery,
            factory,
            mailbox_capacity=mailbox_capacity,
            batch_limit=batch_limit,
            idle_timeout=idle_timeout,
            max_resident=max_resident,
            max_pending=max_pending,
            cohort=cohort,
        )
        nursery.start_soon(system._sweep_forever)
        yield system
        await system.drain()
        nursery.cancel_scope.cancel()
