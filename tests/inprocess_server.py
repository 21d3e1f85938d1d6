"""hypercorn serving the real app inside the test's own trio run, configured as ``perkamo
serve`` configures it (our connection handling installed, the sweeper running): for tests
that must reach into the server (inject a failure) and see what escapes it."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from hypercorn.trio import serve as hypercorn_serve

from perkamo.runtime import Runtime
from perkamo.server import connections
from perkamo.server.server import _hypercorn_config
from perkamo.settings import Settings
from tests.api_client import app_for
from tests.server_process import free_port


@asynccontextmanager
async def serving(runtime: Runtime, settings: Settings) -> AsyncIterator[int]:
    """The port of a server running for the block; whatever escapes hypercorn's serving
    (a connection's failure included) escapes the block."""
    config, limits = _hypercorn_config(
        dataclasses.replace(settings, host="127.0.0.1", port=free_port())
    )
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            functools.partial(hypercorn_serve, app_for(runtime), config, shutdown_trigger=stop.wait)
        )
        sweeper = trio.CancelScope()

        async def sweep() -> None:
            with sweeper:
                await connections.watch(limits)

        nursery.start_soon(sweep)
        yield int(binds[0].rsplit(":", 1)[1])
        stop.set()
        sweeper.cancel()
