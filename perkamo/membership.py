"""Membership: this process registers in the members table, refreshes its heartbeat twice a
second on a connection of its own, and learns whether any other server process shares the
database.

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
import secrets
import socket

import trio

from perkamo.profiles.history import RecentHistory
from storage import StorageUnavailable
from storage import members as store
from storage.database import DEFAULT_TIMEOUTS, Timeouts
from storage.dedicated import DedicatedConnection

log = logging.getLogger(__name__)

HEARTBEAT = 0.5  # seconds between heartbeats
LEASE = 1.0  # how long one check that found no other member lets memory answer reads
JOIN_WAIT = 1.5  # > LEASE: a joining member's wait when others are alive
PEER_TIMEOUT = 3.0  # a member silent for longer is gone


class Membership:
    def __init__(
        self,
        url: str,
        history: RecentHistory,
        address: str | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
    ) -> None:
        self.id = secrets.token_hex(8)
        self._conn = DedicatedConnection(url, timeouts)
        self._history = history
        self._address = address
        self.peers = 0

    async def join(self) -> None:
        """Register; when other members are alive, wait until any of them that was alone
        has seen this one (its lease has lapsed) before serving."""
        await self._register()
        await self._check()
        if self.peers:
            await trio.sleep(JOIN_WAIT)

    async def run(self) -> None:
        try:
            while True:
                started = trio.current_time()
                await self._check()
                await trio.sleep_until(started + HEARTBEAT)
        finally:
            self._conn.close()

    async def leave(self) -> None:
        self._history.revoke()
        try:
            await self._conn.run(store.leave, self.id)
        except StorageUnavailable:
            log.warning("could not remove this member's row; it expires by its heartbeat")

    async def _register(self) -> None:
        await self._conn.run(
            store.register, self.id, socket.gethostname(), os.getpid(), self._address
        )

    async def _check(self) -> None:
        started = trio.current_time()
        try:
            self.peers = await self._conn.run(store.heartbeat, self.id, PEER_TIMEOUT)
        except (LookupError, StorageUnavailable) as exc:
            self._history.revoke()  # storage decides again at the next heartbeat
            if isinstance(exc, LookupError):  # the row was deleted: register again
                with contextlib.suppress(StorageUnavailable):
                    await self._register()
            return
        if self.peers:
            self._history.revoke()
        else:
            self._history.grant(started, LEASE)
