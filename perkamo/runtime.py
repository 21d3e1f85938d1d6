"""Start-up wiring: storage, the group-commit writer, the actor system, the listener.

``open_runtime`` is used by ``perkamo serve`` and by the tests alike. On exit it shuts down
in the order that loses nothing: stop admitting and drain the actors, then flush the writer,
then close the connections.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

import trio

from actors import (
    ActorSystem,
    Admission,
    SystemStatistics,
    open_actor_system,
)
from perkamo.access.auth import Authenticator
from perkamo.access.browser_auth import BrowserAccess
from perkamo.access.rate_limit import RateLimiter
from perkamo.access.streams import StreamRegistry, StreamStatistics
from perkamo.access.tokens import KeyRing
from perkamo.attempts import AttemptLog
from perkamo.cluster.membership import PEER_TIMEOUT, Membership
from perkamo.cluster.node import Cluster, ClusterStatistics, open_listeners
from perkamo.cluster.protocol import Charge, Charged
from perkamo.cluster.shards import shard_of
from perkamo.configuration import ProgramCatalog, upgrade_checksums
from perkamo.profiles.actor import ProfileActor, ProfileKey, ProfileServices
from perkamo.profiles.cohort import ProfileCohort
from perkamo.profiles.commands import AnyCommand, Tick, tick_id
from perkamo.profiles.gateway import Gateway
from perkamo.profiles.history import RecentHistory
from perkamo.profiles.snapshot import Snapshot
from perkamo.profiles.sweeper import Cursor, Sweeper, SweeperStatistics, wall_clock
from perkamo.profiles.usage import UsageLedger
from perkamo.settings import Settings
from perkamo.trials.jobs import BacktestRunner
from perkamo.trials.simulate import Simulations
from perkamo.webhooks import WebhookDispatcher, WebhookRegistry
from perkamo.webhooks.dispatcher import DispatcherStatistics
from storage import (
    Database,
    GroupCommitWriter,
    Listener,
    open_database,
    open_group_commit_writer,
)
from storage import members as member_store
from storage.group_commit import WriterStatistics
from storage.health import StorageHealth
from storage.migrations import migrate
from storage.profile_loader import open_profile_loader
from storage.sweep import Due, due_profiles
from storage.thread_calls import current_deadline

log = logging.getLogger(__name__)

AUTH_CHANNEL = "perkamo_auth"
ADMISSION_FLOOR = 1000  # ten full batches always fit
CONFIG_CHANNEL = "perkamo_config"


@dataclass(frozen=True, slots=True)
class RuntimeStatistics:
    actors: SystemStatistics
    writer: WriterStatistics
    webhooks: DispatcherStatistics
    cluster: ClusterStatistics
    streams: StreamStatistics
    changes_published: int  # live streams' changes handed to subscribers
    sweeper: SweeperStatistics = SweeperStatistics()


@dataclass(slots=True)
class Runtime:
    settings: Settings
    db: Database
    writer: GroupCommitWriter
    actors: ActorSystem[ProfileKey, AnyCommand, object]
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
    gateway: Gateway
    browser: BrowserAccess  # browser keys and tokens (docs/api.md "The browser half")
    streams: StreamRegistry  # the open live streams
    simulations: Simulations = field(default_factory=Simulations)
    client_rate: RateLimiter = field(default_factory=RateLimiter)  # per (browser key, customer)
    stopping: bool = False  # a shutdown began: new requests are answered 503 shutting_down
    sweeper: Sweeper | None = None  # a member's (an operator's command sweeps nothing)

    def statistics(self) -> RuntimeStatistics:
        """What the runtime's parts report now (``/metrics`` reads it at every scrape)."""
        return RuntimeStatistics(
            self.actors.statistics(),
            self.writer.statistics(),
            self.webhooks.stats,
            self.cluster.statistics(),
            self.streams.statistics(),
            self.profiles.subscribers.published,
            self.sweeper.statistics() if self.sweeper is not None else SweeperStatistics(),
        )

    def deadline(self) -> float:
        """When the request being served must have its answer (docs/api.md "Timeouts")."""
        return self.gateway.deadline()

    async def committed(self, key: ProfileKey) -> Snapshot:
        """A profile's committed state without queueing behind its writes (simulation)."""
        resident = self.actors.resident(key)
        actor = resident if isinstance(resident, ProfileActor) else None
        return await self.profiles.committed(key, actor)


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
            ring = KeyRing(db, settings.token_issuer)
            browser = BrowserAccess(db, ring, lambda: listener.healthy)
            streams = StreamRegistry(settings.max_streams)
            # Keys changed (a revocation?): every open stream checks its token at once.
            browser.on_forget = lambda: streams.tell_all("recheck")
            nursery.start_soon(_listen, listener, auth, programs, hooks, browser)
            nursery.start_soon(auth.run_usage_recorder)
            with trio.move_on_after(5):
                await listener.connected.wait()
            await ring.start()
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
            async with _open_profiles(settings, services, nursery) as system:
                gateway = Gateway(
                    system, cluster, partial(_deadline, settings.request_timeout), health.ready
                )
                runtime = Runtime(
                    settings, db, writer, system, auth, listener, programs, usage,
                    RateLimiter(), dispatcher, health, history, services, backtests, attempts,
                    cluster, gateway, browser, streams,
                )  # fmt: skip
                services.subscribers.attach(system.pin, system.unpin)
                if member:
                    _serve_shards(runtime)
                    if settings.sweep_rate > 0:
                        runtime.sweeper = sweeper_for(runtime)
                        nursery.start_soon(runtime.sweeper.run)
                yield runtime
                # Other members stop sending this one work before its actors drain.
                await membership.step_down()
            cluster.close()
            await usage.flush_requests(writer.commit)
            await attempts.flush()
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def _open_profiles(
    settings: Settings, services: ProfileServices, nursery: trio.Nursery
) -> AsyncIterator[ActorSystem[ProfileKey, AnyCommand, object]]:
    """The profiles' actor system, with its admission bound (docs/api.md "Admission")."""
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
        yield system


async def _listen(
    listener: Listener,
    auth: Authenticator,
    programs: ProgramCatalog,
    hooks: WebhookRegistry,
    browser: BrowserAccess,
) -> None:
    """Forget cached keys, programs and endpoints when another process changes them."""

    def on_notify(channel: str, payload: str) -> None:
        if channel == AUTH_CHANNEL:
            auth.forget_all()
            browser.forget_all()
            hooks.forget()
        elif channel == CONFIG_CHANNEL and payload.isdigit():
            programs.forget(int(payload))

    def on_reset() -> None:  # notifications may have been missed
        auth.forget_all()
        browser.forget_all()
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

    def charge(asked: Charge) -> Charged:  # a browser bucket kept here, for another member
        d = runtime.client_rate.take(asked.bucket, asked.per_second, asked.burst)
        return Charged(asked.id, d.allowed, d.limit, d.remaining, d.reset, d.retry_after)

    runtime.cluster.serve(runtime.gateway.serve_forwarded, runtime.profiles.subscribers, charge)

    async def passivate(shards: set[int]) -> None:
        def moving(key: ProfileKey) -> bool:
            return shard_of(*key) in shards

        # Live streams of these profiles subscribe again where the profile goes next.
        runtime.profiles.subscribers.end_matching(moving)
        await runtime.actors.passivate_matching(moving)

    runtime.cluster.membership.own_shards(passivate)


def sweeper_for(
    runtime: Runtime, clock: Callable[[], datetime] = wall_clock, rate: float | None = None
) -> Sweeper:
    """The sweeper of this member: it finds the due profiles of the shards it owns (every
    shard while it is alone) and sends their ticks through the gateway, at ``rate`` ticks a
    second (default: the settings')."""
    membership = runtime.cluster.membership

    async def find(now: datetime, after: Cursor | None, limit: int) -> list[Due]:
        shards = sorted(membership.held) if membership.peers else None
        return await runtime.db.run(due_profiles, now, shards, after, limit)

    async def send(due: list[Due], now: datetime) -> list[object]:
        ticks = [
            ((d.space_id, d.user_id),
             Tick(transaction_id=tick_id(d.user_id, d.due_at), due_at=d.due_at, received_at=now))
            for d in due
        ]  # fmt: skip
        deadline = trio.current_time() + runtime.settings.request_timeout
        return list(await runtime.gateway.ask_many(ticks, deadline=deadline))

    return Sweeper(find, send, rate=rate or runtime.settings.sweep_rate, clock=clock)


def _deadline(timeout: float) -> float:
    """When the request being served must have its answer (docs/api.md "Timeouts"): the deadline
    the HTTP edge set for it (counted from its arrival), else ``timeout`` from now."""
    given = current_deadline()
    return trio.current_time() + timeout if given is None else given
