"""Membership: this process registers in the members table, refreshes its heartbeat twice a
second on a connection of its own, learns which other members share the database, and
holds its shards' advisory locks on that same connection (docs/architecture.md "Several
processes and nodes").

A member is live while its PostgreSQL session exists and its heartbeat is recent: a
process that dies loses its session at once, so its shards are free (and taken over) at
the next heartbeat of another member. A member that cannot reach PostgreSQL for its
heartbeat stops claiming its shards (its session, and with it the locks, may be gone).
Each heartbeat also checks the locks against PostgreSQL's lock table: after a failover the
new primary holds none of them (session locks are not replicated), and a member whose
session was replaced between two heartbeats notices its shards are gone and takes them
again there (docs/architecture.md "PostgreSQL failover").

While it is alone it grants the profile history an exclusivity lease (a profile read may
then be answered from memory; profiles/history.py). The lease lasts LEASE seconds counted
from when the check began, and a process that finds other members alive when it joins waits
longer than that before serving, so no member answers from memory once another one may be
writing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from perkamo.cluster.ownership import Balancer
from perkamo.cluster.shards import LOCK_NAMESPACE
from perkamo.profiles.history import RecentHistory
from storage import StorageUnavailable
from storage import members as store
from storage.database import DEFAULT_TIMEOUTS, Timeouts
from storage.dedicated import DedicatedConnection
from storage.members import MemberRow

log = logging.getLogger(__name__)

HEARTBEAT = 0.5  # seconds between heartbeats
LEASE = 1.0  # how long one check that found no other member lets memory answer reads
JOIN_WAIT = 1.5  # > LEASE: a joining member's wait when others are alive
PEER_TIMEOUT = 3.0  # a member silent for longer is gone
HAND_OVER_SECONDS = 2.0  # the longest a hand-over waits for its actors to go idle

# Passivates the resident profiles of the given shards once their mailboxes are empty.
Passivate = Callable[[set[int]], Awaitable[None]]


@dataclass
class MembershipStatistics:
    acquired: int = 0  # shards taken (at start, from a member gone, or handed over)
    released: int = 0  # shards handed over to another member
    lost: int = 0  # shards whose lock was gone (a new session, a failover)
    hand_over_seconds: float = 0.0  # the last hand-over's duration
    heartbeat_failures: int = 0


class Membership:
    def __init__(
        self,
        url: str,
        history: RecentHistory,
        member_id: str,
        address: str | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
    ) -> None:
        self.id = member_id
        self._conn = DedicatedConnection(url, timeouts)
        self._history = history
        self.address = address
        self.peers = 0
        self.held: set[int] = set()
        self.members: dict[str, MemberRow] = {}  # the live ones, this one included
        self.owners: dict[int, str] = {}  # shard → member, as the members publish it
        self.leaving: dict[int, str] = {}  # shards handed over → the member taking them
        self.stats = MembershipStatistics()
        self._balancer = Balancer(member_id)
        self._passivate: Passivate | None = None
        self._stopping = False

    async def join(self) -> None:
        """Register; when other members are alive, wait until any of them that was alone
        has seen this one (its lease has lapsed) before serving."""
        await self._register()
        await self._check()
        if self.peers:
            await trio.sleep(JOIN_WAIT)

    def own_shards(self, passivate: Passivate) -> None:
        """From now on take shards (the actors exist to serve them)."""
        self._passivate = passivate

    async def run(self) -> None:
        try:
            while not self._stopping:
                started = trio.current_time()
                await self._check()
                await trio.sleep_until(started + HEARTBEAT)
        finally:
            if not self._stopping:  # stepping down closes it once its own calls are done
                self._conn.close(finished=True)

    async def step_down(self) -> None:
        """Stop being a member: release every shard and remove the row, so that the others
        take the shards at their next heartbeat. This member's actors still apply what
        reaches them meanwhile (the caller drains them afterwards)."""
        self._stopping = True
        self._passivate = None
        self._history.revoke()
        try:
            await self._conn.run(store.unlock, LOCK_NAMESPACE, sorted(self.held))
            self.held.clear()
            await self._conn.run(store.leave, self.id)
        except StorageUnavailable:
            log.warning("could not remove this member's row; it expires by its heartbeat")
        # Closing the session releases whatever it still holds; a heartbeat still in
        # flight cannot open another one afterwards.
        self._conn.close(finished=True)
        if self.peers:
            await trio.sleep(2 * HEARTBEAT)  # they see it gone and stop forwarding here

    def owner(self, shard: int) -> MemberRow | None:
        """The other member to send a shard's messages to (None: serve them here)."""
        if shard in self.held:
            return None
        owner = self.owners.get(shard) or self.leaving.get(shard)
        if owner is None or owner == self.id:
            return None
        return self.members.get(owner)

    async def _register(self) -> None:
        await self._conn.run(
            store.register, self.id, socket.gethostname(), os.getpid(), self.address
        )

    async def _check(self) -> None:
        started = trio.current_time()
        if self._stopping:
            return
        try:
            rows = await self._conn.run(store.heartbeat, self.id, sorted(self.held))
        except (LookupError, StorageUnavailable) as exc:
            self._lost()
            if isinstance(exc, LookupError):  # the row was deleted: register again
                with contextlib.suppress(StorageUnavailable):
                    await self._register()
            return
        live = {r.id: r for r in rows if r.id == self.id or _live(r)}
        self.members = live
        self.peers = len(live) - (self.id in live)
        self.owners = {s: r.id for r in live.values() if r.id != self.id for s in r.shards}
        self.leaving = {s: m for s, m in self.leaving.items() if s not in self.owners}
        if self.peers:
            self._history.revoke()
        else:
            self._history.grant(started, LEASE)
        if self._passivate is not None:
            own = live[self.id].backend_pid if self.id in live else None
            try:  # members without an address (operators' commands) own nothing
                await self._balance({m for m, r in live.items() if r.address}, own)
            except StorageUnavailable:
                self._lost()

    def _lost(self) -> None:
        """The heartbeat failed: the session may be gone, and its locks with it."""
        self.stats.heartbeat_failures += 1
        self._history.revoke()  # storage decides again at the next heartbeat
        if self.held:
            log.warning("lost the database session: serving %d shards unowned", len(self.held))
        self.held.clear()
        self._conn.close()  # a new session: the old one's locks must not be relied on

    async def _balance(self, live: set[str], session: int | None) -> None:
        holders = await self._conn.run(store.lock_holders, LOCK_NAMESPACE)
        lost = {s for s in self.held if holders.get(s) != session}
        if lost:  # this session does not hold them: another one did (before a failover)
            log.warning("%d shard locks were gone; taking them again", len(lost))
            self.held -= lost
            self.stats.lost += len(lost)
        plan = self._balancer.plan(live, self.held, set(holders))
        if plan.acquire:
            taken = await self._conn.run(store.try_lock, LOCK_NAMESPACE, plan.acquire)
            self.held.update(taken)
            self.stats.acquired += len(taken)
        if plan.release:
            await self._hand_over(plan.release)

    async def _hand_over(self, shards: dict[int, str]) -> None:
        """Drain → flush → passivate → unlock: new messages for these shards go to their
        new owner from now on; the ones already admitted here are applied and committed
        (each answer waits for its commit) before the actors are passivated."""
        started = trio.current_time()
        self.held.difference_update(shards)
        self.leaving.update(shards)
        if self._passivate is not None:
            with trio.move_on_after(HAND_OVER_SECONDS):
                await self._passivate(set(shards))
        await self._conn.run(store.unlock, LOCK_NAMESPACE, sorted(shards))
        self.stats.released += len(shards)
        self.stats.hand_over_seconds = trio.current_time() - started
        log.info("handed %d shards over", len(shards))


def _live(row: MemberRow) -> bool:
    return row.alive and row.heartbeat_age < PEER_TIMEOUT
