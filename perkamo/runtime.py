"""Start-up wiring: storage, the group-commit writer, the actor system, the listener.

``open_runtime`` is used by ``perkamo serve`` and by the tests alike. On exit it shuts down
in the order that loses nothing: stop admitting and drain the actors, then flush the writer,
then close the connections.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import trio

from actors import (
    ActorError,
    ActorFailed,
    ActorSystem,
    ActorSystemClosed,
    MailboxFull,
    Reply,
    SystemFull,
    SystemStatistics,
    open_actor_system,
)
from actors._admission import Admission
from perkamo.access.auth import Authenticator
from perkamo.access.rate_limit import RateLimiter
from perkamo.attempts import AttemptLog
from perkamo.cluster.links import ForwardedReply
from perkamo.cluster.node import Cluster, ClusterStatistics, open_listeners
from perkamo.cluster.shards import shard_of
from perkamo.configuration import ProgramCatalog, upgrade_checksums
from perkamo.errors import Code, PerkamoError
from perkamo.membership import PEER_TIMEOUT, Membership
from perkamo.profiles import (
    Answer,
    Message,
    ProfileKey,
    ProfileServices,
    Read,
    Snapshot,
    UsageLedger,
)
from perkamo.profiles.cohort import ProfileCohort
from perkamo.profiles.history import RecentHistory
from perkamo.settings import Settings
from perkamo.trials.jobs import BacktestRunner
from perkamo.webhooks import WebhookDispatcher, WebhookRegistry
from perkamo.webhooks.dispatcher import DispatcherStatistics
from storage import (
    CommitOutcomeUnknown,
    Database,
    GroupCommitWriter,
    Listener,
    StorageUnavailable,
    open_database,
    open_group_commit_writer,
)
from storage import members as member_store
from storage.group_commit import WriterStatistics
from storage.health import StorageHealth
from storage.migrations import migrate
from storage.profile_loader import open_profile_loader
from storage.thread_calls import current_deadline

log = logging.getLogger(__name__)

AUTH_CHANNEL = "perkamo_auth"
ADMISSION_FLOOR = 1000  # ten full batches always fit
CONFIG_CHANNEL = "perkamo_config"


def _shutting_down() -> PerkamoError:
    return PerkamoError(Code.SHUTTING_DOWN, "The server is shutting down; retry.")


def _refusal(exc: ActorError) -> PerkamoError:
    """Why the actor system did not admit a message, as the API says it."""
    if isinstance(exc, MailboxFull):
        return PerkamoError(
            Code.OVERLOADED, "This profile is receiving more work than it can take; retry shortly."
        )
    if isinstance(exc, SystemFull):
        return PerkamoError(
            Code.OVERLOADED,
            "The server is holding all the work it can answer in time; retry shortly.",
        )
    return _shutting_down()


@dataclass(frozen=True, slots=True)
class RuntimeStatistics:
    actors: SystemStatistics
    writer: WriterStatistics
    webhooks: DispatcherStatistics
    cluster: ClusterStatistics


@dataclass(slots=True)
class Runtime:
    settings: Settings
    db: Database
    writer: GroupCommitWriter
    actors: ActorSystem[ProfileKey, Message, Answer]
    auth: Authenticator
    listener: Listener
    programs: ProgramCatalog
    usage: UsageLedger
    rate_limiter: RateLimiter
    webhooks: WebhookDispatcher
    health: StorageHealth
    history: RecentHistory
    profiles: ProfileServices
    backtests: BacktestRunner
    attempts: AttemptLog
    cluster: Cluster
    stopping: bool = False  # a shutdown began: new requests are answered 503 shutting_down

    def submit(self, key: ProfileKey, message: Message) -> Pending:
        """Admit a message now: to the profile's mailbox here, or to the member owning its
        shard (forwarded; ARCHITECTURE.md "Several processes and nodes"). Raises 503
        overloaded when the mailbox is full, the server holds all the work it may (API.md
        "Admission"), or the server is shutting down."""
        return self._forward(key, message) or self.submit_here(key, message)

    def submit_many(
        self, items: Sequence[tuple[ProfileKey, Message]]
    ) -> list[Pending | PerkamoError]:
        """``submit`` for each item in order: per item its pending answer, or the 503 that
        refused it. The idle profiles served here start together (profiles/cohort.py)."""
        out: list[Pending | PerkamoError | None] = [None] * len(items)
        here: list[int] = []
        for i, (key, message) in enumerate(items):
            try:
                out[i] = self._forward(key, message)
            except PerkamoError as exc:
                out[i] = exc.with_traceback(None)
            if out[i] is None:
                here.append(i)
        admitted = self.actors.ask_many_nowait([items[i] for i in here])
        for i, reply in zip(here, admitted, strict=True):
            out[i] = _refusal(reply) if isinstance(reply, ActorError) else reply
        return out  # type: ignore[return-value]

    def _forward(self, key: ProfileKey, message: Message) -> ForwardedReply | None:
        """The message sent to the member owning its shard; None: it is served here."""
        if not self.cluster.peers:
            return None
        local = partial(self.submit_here, key, message)
        seconds = self.deadline() - trio.current_time()
        return self.cluster.forward(key, message, seconds, local)

    def serve_forwarded(
        self, key: ProfileKey, message: Message
    ) -> Callable[[float], Awaitable[Answer]]:
        """Admit a message another member forwarded (always here: never forwarded again);
        returns what waits, at most the given seconds, for its answer."""
        reply = self.submit_here(key, message)
        writes = not isinstance(message, Read)

        async def answer(seconds: float) -> Answer:
            deadline = trio.current_time() + seconds
            (result,) = await self.outcomes([reply], writes=writes, deadline=deadline)
            return result

        return answer

    def submit_here(self, key: ProfileKey, message: Message) -> Reply[Answer]:
        """Admit a message to the profile's mailbox in this process."""
        try:
            return self.actors.ask_nowait(key, message)
        except (MailboxFull, SystemFull, ActorSystemClosed) as exc:
            raise _refusal(exc) from None

    async def outcome(
        self, reply: Pending, *, writes: bool, deadline: float | None = None
    ) -> Answer:
        """Wait (bounded) for a submitted message's answer; a refusal is raised."""
        (answer,) = await self.outcomes([reply], writes=writes, deadline=deadline)
        if isinstance(answer, PerkamoError):
            try:
                raise answer
            finally:  # the traceback holds this frame: no cycle back to the exception
                del answer
        return answer

    async def outcomes(
        self, replies: Sequence[Pending], *, writes: bool, deadline: float | None = None
    ) -> list[Answer]:
        """Wait (bounded, one deadline for all) for submitted messages' answers; each is its
        answer or the PerkamoError it failed with. Storage trouble becomes 503; a message
        still waiting when the time is up is withdrawn, so it is certainly not applied (503
        overloaded); one already being applied has an unknown outcome."""
        answers: list[Answer | object] = [_WAITING] * len(replies)
        with trio.move_on_at(self.deadline() if deadline is None else deadline):
            await trio.lowlevel.checkpoint_if_cancelled()
            for i, reply in enumerate(replies):
                try:
                    # Answers that arrived together are read without a checkpoint each.
                    if isinstance(reply, Reply) and reply.done:
                        answers[i] = reply.result()
                    else:
                        answers[i] = await reply.wait()
                except ActorFailed as exc:
                    answers[i] = _failed(exc.__cause__, writes=writes)
                except ActorSystemClosed:
                    answers[i] = _shutting_down()
        for i, reply in enumerate(replies):
            if answers[i] is _WAITING:
                answers[i] = _late(reply, writes=writes, storage_down=not self.health.ready())
        return answers  # type: ignore[return-value]

    def statistics(self) -> RuntimeStatistics:
        """What the runtime's parts report now (``/metrics`` reads it at every scrape)."""
        return RuntimeStatistics(
            self.actors.statistics(),
            self.writer.statistics(),
            self.webhooks.stats,
            self.cluster.statistics(),
        )

    def deadline(self) -> float:
        """When the request being served must have its answer (API.md "Timeouts"): the
        deadline the HTTP edge set for it, else request_timeout from now."""
        given = current_deadline()
        return trio.current_time() + self.settings.request_timeout if given is None else given

    async def committed(self, key: ProfileKey) -> Snapshot:
        """A profile's committed state without queueing behind its writes (simulation)."""
        return await self.profiles.committed(key, self.actors.resident(key))

    async def ask(self, key: ProfileKey, message: Message, *, writes: bool) -> Answer:
        return await self.outcome(self.submit(key, message), writes=writes)


_WAITING = object()
Pending = Reply[Answer] | ForwardedReply  # a message admitted here, or sent to its owner


def _late(reply: Pending, *, writes: bool, storage_down: bool) -> PerkamoError:
    if writes and not reply.withdraw():
        return PerkamoError(
            Code.OUTCOME_UNKNOWN,
            "The request timed out while it was being applied; it may or may not have "
            "been. Retry with the same transaction_id.",
        )
    reply.withdraw()
    if storage_down:  # it waited for storage (a failover), not behind other work
        return PerkamoError(
            Code.STORAGE_UNAVAILABLE, "Storage is unavailable; the request was not applied."
        )
    return PerkamoError(
        Code.OVERLOADED, "The request waited too long and was not applied; retry shortly."
    )


def _failed(cause: BaseException | None, *, writes: bool) -> PerkamoError:
    """An actor batch that raised. Storage trouble is 503; anything else is a defect (the
    actor is re-activated from storage): a write in that batch may or may not have
    committed, so it answers outcome_unknown (retry-safe), never a 500."""
    if isinstance(cause, CommitOutcomeUnknown):
        return PerkamoError(
            Code.OUTCOME_UNKNOWN,
            "Storage failed while committing; the request may or may not have been applied. "
            "Retry with the same transaction_id.",
        )
    if isinstance(cause, StorageUnavailable):
        return PerkamoError(
            Code.STORAGE_UNAVAILABLE, "Storage is unavailable; retry with the same transaction_id."
        )
    log.error("profile actor failed", exc_info=cause)
    if writes:
        return PerkamoError(
            Code.OUTCOME_UNKNOWN,
            "Something went wrong on our side while applying the request; it may or may not "
            "have been applied. Retry with the same transaction_id.",
        )
    return PerkamoError(Code.INTERNAL_ERROR, "Something went wrong on our side; retry shortly.")


@asynccontextmanager
async def open_runtime(
    settings: Settings, database_url: str, *, member: bool = True
) -> AsyncIterator[Runtime]:
    """``member`` False: an operator's command — it forwards profiles' messages to their
    owners but owns no shard and takes no forwarded work."""
    timeouts = settings.timeouts
    async with open_database(database_url, timeouts=timeouts) as db:
        await db.run(migrate)
        await db.run(upgrade_checksums)
        async with (
            open_group_commit_writer(database_url, timeouts=timeouts) as writer,
            open_profile_loader(database_url, timeouts=timeouts) as loader,
            trio.open_nursery() as nursery,
        ):
            programs = ProgramCatalog(db)
            hooks = WebhookRegistry(db)
            listener = Listener(database_url, [AUTH_CHANNEL, CONFIG_CHANNEL], timeouts)
            # Cached key records are trusted only while notifications can reach them.
            auth = Authenticator(db, lambda: listener.healthy)
            nursery.start_soon(_listen, listener, auth, programs, hooks)
            nursery.start_soon(auth.run_usage_recorder)
            with trio.move_on_after(5):
                await listener.connected.wait()
            health = StorageHealth(database_url, timeouts, db)
            await health.check()
            nursery.start_soon(health.run)
            usage = UsageLedger(db)
            nursery.start_soon(usage.run_request_flusher, writer.commit)
            dispatcher = WebhookDispatcher(db)
            nursery.start_soon(dispatcher.run)
            history = RecentHistory()
            cluster = await _join_cluster(settings, database_url, db, history, nursery, member)
            membership = cluster.membership
            backtests = BacktestRunner(database_url, db, membership.id, nursery)
            attempts = AttemptLog(db)
            nursery.start_soon(attempts.run)
            await backtests.recover(PEER_TIMEOUT)
            services = ProfileServices(
                db, loader, writer, programs, usage, hooks, dispatcher.kick, history
            )
            async with open_actor_system(
                services.activate,
                cohort=ProfileCohort(services),
                mailbox_capacity=settings.mailbox_capacity,
                idle_timeout=settings.idle_seconds,
                max_resident=settings.max_resident_profiles,
                max_pending=settings.max_pending,
            ) as system:
                admission = Admission(
                    system, budget=2.0, floor=ADMISSION_FLOOR, ceiling=settings.max_pending
                )
                nursery.start_soon(admission.run)
                runtime = Runtime(
                    settings,
                    db,
                    writer,
                    system,
                    auth,
                    listener,
                    programs,
                    usage,
                    RateLimiter(),
                    dispatcher,
                    health,
                    history,
                    services,
                    backtests,
                    attempts,
                    cluster,
                )
                if member:
                    _serve_shards(runtime)
                yield runtime
                # Other members stop sending this one work before its actors drain.
                await membership.step_down()
            cluster.close()
            await usage.flush_requests(writer.commit)
            await attempts.flush()
            nursery.cancel_scope.cancel()


async def _listen(
    listener: Listener, auth: Authenticator, programs: ProgramCatalog, hooks: WebhookRegistry
) -> None:
    """Forget cached keys, programs and endpoints when another process changes them."""

    def on_notify(channel: str, payload: str) -> None:
        if channel == AUTH_CHANNEL:
            auth.forget_all()
            hooks.forget()
        elif channel == CONFIG_CHANNEL and payload.isdigit():
            programs.forget(int(payload))

    def on_reset() -> None:  # notifications may have been missed
        auth.forget_all()
        programs.forget()
        hooks.forget()

    await listener.run(on_notify, on_reset)


async def _join_cluster(
    settings: Settings,
    database_url: str,
    db: Database,
    history: RecentHistory,
    nursery: trio.Nursery,
    member: bool,
) -> Cluster:
    """Register as a member (with an internal address unless an operator's command)."""
    listeners, address = await open_listeners(settings.cluster_address) if member else ([], None)
    membership = Membership(
        database_url, history, secrets.token_hex(8), address, timeouts=settings.timeouts
    )
    await membership.join()
    nursery.start_soon(membership.run)
    secret = await db.run(member_store.cluster_secret, secrets.token_hex(32))
    return Cluster(membership, secret, nursery, listeners)


def _serve_shards(runtime: Runtime) -> None:
    """Answer other members' forwarded messages, and take shards from now on."""
    runtime.cluster.serve(runtime.serve_forwarded)

    async def passivate(shards: set[int]) -> None:
        await runtime.actors.passivate_matching(lambda key: shard_of(*key) in shards)

    runtime.cluster.membership.own_shards(passivate)
