"""PostgreSQL LISTEN/NOTIFY delivered into trio: how changes made elsewhere (the operator CLI,
another server process) reach a running server within a second.

LISTEN registrations do not survive a failover: the listener connects again (to the new
primary: ``connect`` asks for a read-write server) and subscribes again, and its
``on_reset`` tells the caches that anything may have changed meanwhile."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import trio
from psycopg import sql

from ._errors import StorageUnavailable
from .database import DEFAULT_TIMEOUTS, Timeouts, connect

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
# A listening connection only reads: on a server that vanished silently it would wait for
# ever, notifications lost. A query this often makes TCP notice (tcp_user_timeout).
PROBE_SECONDS = 2.0
MAX_BACKOFF = 1.0  # between connection attempts: a new primary is listened to within 1 s


class Listener:
    """Calls ``on_notify(channel, payload)`` (in the trio thread) for every notification on
    ``channels``. ``on_reset()`` is called whenever the listening connection is established
    or lost: anything missed meanwhile must be assumed changed.

    The blocking loop runs in its own thread; cancelling ``run`` returns at once and the
    thread stops within one poll interval.
    """

    def __init__(
        self,
        url: str,
        channels: list[str],
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
    ) -> None:
        self._url = url
        self._channels = channels
        self._timeouts = timeouts
        self._on_notify: Callable[[str, str], None] = lambda channel, payload: None
        self._on_reset: Callable[[], None] = lambda: None
        self.connected = trio.Event()
        # While False, notifications may be missed: callers must not trust their caches.
        self.healthy = False
        self._expected: dict[str, trio.Event] = {}

    async def run(
        self, on_notify: Callable[[str, str], None], on_reset: Callable[[], None]
    ) -> None:
        """Listen until cancelled, calling the handlers as described above."""
        self._on_notify, self._on_reset = on_notify, on_reset
        stop = threading.Event()
        token = trio.lowlevel.current_trio_token()
        try:
            await trio.to_thread.run_sync(
                self._loop, stop, token, abandon_on_cancel=True, limiter=trio.CapacityLimiter(1)
            )
        finally:
            stop.set()

    def expect(self, channel: str) -> trio.Event:
        """An event set once the next notification on ``channel`` has been handled: call it
        before making the change, then wait (what a test does instead of polling)."""
        return self._expected.setdefault(channel, trio.Event())

    def _handle(self, channel: str, payload: str) -> None:
        self._on_notify(channel, payload)
        if (handled := self._expected.pop(channel, None)) is not None:
            handled.set()

    def _set_health(self, healthy: bool) -> None:
        self.healthy = healthy
        self._on_reset()
        if healthy:
            self.connected.set()

    def _loop(self, stop: threading.Event, token: trio.lowlevel.TrioToken) -> None:
        def to_trio(fn: Callable[..., None], *args: Any) -> None:
            try:
                trio.from_thread.run_sync(fn, *args, trio_token=token)
            except trio.RunFinishedError:
                stop.set()

        backoff = 0.1
        while not stop.is_set():
            try:
                conn = connect(self._url, autocommit=True, timeouts=self._timeouts)
            except StorageUnavailable:
                stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = 0.1
            try:
                for channel in self._channels:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                to_trio(self._set_health, True)
                probed = time.monotonic()
                while not stop.is_set():
                    for note in conn.notifies(timeout=POLL_SECONDS):
                        to_trio(self._handle, note.channel, note.payload)
                    if time.monotonic() - probed > PROBE_SECONDS:
                        conn.execute("SELECT 1")
                        probed = time.monotonic()
            except psycopg.Error as exc:
                if stop.is_set():
                    return  # shutting down: the database may already be gone
                log.warning("notification listener lost its connection: %s", type(exc).__name__)
                to_trio(self._set_health, False)
            finally:
                conn.close()
