"""A fix for hypercorn's trio TCP server (0.18, pinned): a keep-alive connection's idle timer
never started, so idle connections were never closed — not after ``keep_alive_timeout``, and
not when a shutdown began (each held the shutdown until the grace deadline).

The ``Updated(idle=True)`` event that (re)starts the timer is sent from the finished request's
task, whose cancel scope is already cancelled: the ``nursery.start`` inside raises
``Cancelled`` before the timer task runs. Sending that event shielded starts the timer; the
shielded work is one ``nursery.start`` of a task that reports started at once.
``tests/perkamo/test_process.py::test_idle_keep_alive_connections_do_not_hold_a_shutdown``
fails without this.
"""

from __future__ import annotations

from typing import Any

import trio
from hypercorn.events import Event, Updated
from hypercorn.trio.tcp_server import TCPServer

_original = TCPServer.protocol_send


async def _protocol_send(self: Any, event: Event) -> None:
    if isinstance(event, Updated):
        with trio.CancelScope(shield=True):
            await _original(self, event)
    else:
        await _original(self, event)


def apply() -> None:
    TCPServer.protocol_send = _protocol_send  # type: ignore[method-assign]
