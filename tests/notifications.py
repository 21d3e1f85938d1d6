"""Waiting for a change made elsewhere (the CLI, another process) to reach a runtime through
PostgreSQL NOTIFY — on the listener's event, never by sleeping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from perkamo.runtime import AUTH_CHANNEL, Runtime


@asynccontextmanager
async def notified(
    runtime: Runtime, channel: str = AUTH_CHANNEL, within: float = 2.0
) -> AsyncIterator[None]:
    """Make the change inside the block; on leaving it, the runtime has handled its
    notification (or the test fails after ``within`` seconds)."""
    handled = runtime.listener.expect(channel)
    yield
    with trio.fail_after(within):
        await handled.wait()
