"""Idle keep-alive connections must not hold a shutdown (hypercorn 0.18's trio server, pinned).

hypercorn restarts a connection's idle timer from the finished request's task, whose cancel
scope is already cancelled, so after a connection's first request the timer never runs: an
idle keep-alive connection then holds a shutdown until the grace deadline (and is otherwise
closed only by the read timeout, ``PERKAMO_READ_TIMEOUT_SECONDS``).

Restarting the timer shielded fixes that but costs a task start and cancel per request
(``wrk -t2 -c64 -d10s`` on /healthz: 1,150 req/s shielded, 1,530–1,800 without). Instead,
each connection records whether it is idle (one attribute write per request), and the server
closes the idle ones when a shutdown begins. Connections busy at that moment close after
their response, as hypercorn does during shutdown. ``tests/perkamo/test_process.py::
test_idle_keep_alive_connections_do_not_hold_a_shutdown`` fails without this.
"""

from __future__ import annotations

import weakref
from typing import Any

import trio
from hypercorn.events import Event, Updated
from hypercorn.trio.tcp_server import TCPServer

_connections: weakref.WeakSet[Any] = weakref.WeakSet()
_original_init = TCPServer.__init__
_original_send = TCPServer.protocol_send


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    self.perkamo_idle = True  # a new connection has no request yet
    _connections.add(self)


async def _protocol_send(self: Any, event: Event) -> None:
    if isinstance(event, Updated):
        self.perkamo_idle = event.idle
    await _original_send(self, event)


def apply() -> None:
    TCPServer.__init__ = _init  # type: ignore[method-assign]
    TCPServer.protocol_send = _protocol_send  # type: ignore[method-assign]


async def close_idle_connections() -> int:
    """Close every connection waiting for a next request; returns how many. Its reader task
    sees the stream closed and ends the connection as on a client's hang-up."""
    idle = [c for c in list(_connections) if getattr(c, "perkamo_idle", False)]
    with trio.CancelScope(shield=True):
        for connection in idle:
            await connection.stream.aclose()
    return len(idle)
