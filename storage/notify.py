"""PostgreSQL LISTEN/NOTIFY delivered into trio: how changes made elsewhere (the operator CLI,
another server process) reach a running server within a second."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg
import trio
from psycopg import sql

from ._errors import StorageUnavailable
from .database import connect

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25


class Listener:
    """Calls ``on_notify(channel, payload)`` for every notification on ``channels``.

    ``on_reset()`` is called whenever the listening connection is (re)established: anything
    missed while it was down must be assumed changed.
    """

    def __init__(
        self,
        url: str,
        channels: list[str],
        on_notify: Callable[[str, str], None],
        on_reset: Callable[[], None],
    ) -> None:
        self._url = url
        self._channels = channels
        self._on_notify = on_notify
        self._on_reset = on_reset
        self.connected = trio.Event()
        # While False, notifications may be missed: callers must not trust their caches.
        self.healthy = False

    def _open(self) -> psycopg.Connection[Any]:
        conn = connect(self._url, autocommit=True)
        for channel in self._channels:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        return conn

    @staticmethod
    def _poll(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
        return [(n.channel, n.payload) for n in conn.notifies(timeout=POLL_SECONDS)]

    async def run(self) -> None:
        backoff = 0.1
        while True:
            try:
                conn = await trio.to_thread.run_sync(self._open)
            except StorageUnavailable:
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.1
            self._on_reset()
            self.healthy = True
            self.connected.set()
            try:
                while True:
                    for channel, payload in await trio.to_thread.run_sync(self._poll, conn):
                        self._on_notify(channel, payload)
            except psycopg.Error as exc:
                log.warning("notification listener lost its connection: %s", exc)
                self.healthy = False
                self._on_reset()
            finally:
                conn.close()
