"""``perkamo serve``: hypercorn (trio worker) inside our own ``trio.run``, one process.

SIGINT/SIGTERM → stop accepting connections → in-flight requests finish (bounded by the
grace period) → the actors drain → the writer's final flush → the embedded database stops.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import resource
import signal
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from perkamo.access import admin, browser_keys
from perkamo.cli.operators import ensure_demo_operator
from perkamo.configuration import ProgramCatalog, activate_demo
from perkamo.http.app import create_app
from perkamo.http.demo_page import DemoPage
from perkamo.runtime import Runtime, open_runtime
from perkamo.server import connections, http1
from perkamo.server.metrics import Metrics
from perkamo.settings import Settings
from storage import Database, EmbeddedPostgres

WORKER_OF = "PERKAMO_WORKER_OF"  # set in a worker's environment: its supervisor's pid
DEMO_PAGE = "PERKAMO_DEMO_PAGE"  # set in a worker's environment under ``serve --demo``

log = logging.getLogger(__name__)


class CannotListen(Exception):
    """The HTTP port could not be bound (in use, or not permitted)."""


def _tune_garbage_collection() -> None:
    """Resident profiles are many long-lived objects: with the default thresholds a full
    collection walks all of them every few thousand allocations and stalls every request in
    flight. Start-up objects are frozen out of collection and full collections made rarer.
    Young collections are triggered by the in-flight working set growing by the threshold
    (a burst of batches holds ~50,000 container objects): at 50,000 they ran every fraction
    of a second and took 12 % of the CPU under load; at 200,000 a few per minute (measured
    in bench/notes.md). Resident profiles hold their state as JSON text, so they add few
    objects to walk."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(200_000, 20, 100)


def _connection_limit(wanted: int) -> int:
    """Raise the open-file limit to its hard maximum and keep the connection limit well
    below it (the database pool, the log and the listeners need descriptors too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = 65536 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return max(16, min(wanted, soft - 256))


async def _wait_for_signal(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            stop.set()
            return


async def _run_in(scope: trio.CancelScope, fn: Callable[[], Awaitable[None]]) -> None:
    with scope:
        await fn()


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[str]:
    """The configured PostgreSQL's URL, or the embedded server's: started, restarted
    whenever it dies while the block runs (docs/api.md "Embedded PostgreSQL"), stopped after."""
    if settings.database_url is not None:
        yield settings.database_url
        return
    embedded = EmbeddedPostgres(settings.data_dir / "pgdata")
    url = await trio.to_thread.run_sync(embedded.start)
    try:
        async with trio.open_nursery() as supervision:
            supervision.start_soon(embedded.supervise)
            yield url
            supervision.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(embedded.stop)


async def serve(settings: Settings, *, demo: bool = False) -> None:
    async with database(settings) as url:
        await _serve_runtime(settings, url, demo)
    log.info("shutdown complete")


async def _serve_runtime(settings: Settings, url: str, demo: bool) -> None:
    async with open_runtime(settings, url) as runtime:
        banner = await load_demo(runtime.db, runtime.programs, settings) if demo else ""
        page = await demo_page(runtime, settings) if demo or DEMO_PAGE in os.environ else None
        config, limits = _hypercorn_config(settings)
        metrics = Metrics(runtime.statistics, runtime.cluster.membership.id)
        app = create_app(runtime, metrics, page)
        _tune_garbage_collection()
        stop = trio.Event()
        signals = trio.CancelScope()  # ended once stopping, whatever stopped it
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_run_in, signals, functools.partial(_wait_for_signal, stop))
            if (parent := os.environ.get(WORKER_OF)) is not None:
                nursery.start_soon(_watch_supervisor, int(parent), stop)
            try:
                binds = await nursery.start(
                    functools.partial(hypercorn_serve, app, config, shutdown_trigger=stop.wait)
                )
            except* OSError as group:
                reason = getattr(group.exceptions[0], "strerror", None) or "refused"
                raise CannotListen(f"cannot listen on {config.bind[0]}: {reason}") from None
            sweeper = trio.CancelScope()
            nursery.start_soon(_run_in, sweeper, functools.partial(connections.watch, limits))
            print(f"Perkamo is listening on {', '.join(binds)}\n{banner}", flush=True)
            await stop.wait()
            # A stop that no signal caused (the supervisor is gone) leaves the signal
            # receiver waiting: the nursery would never end.
            signals.cancel()
            # hypercorn stops accepting; requests in flight finish and their connections
            # close; a request on an open connection is answered 503 shutting_down; idle
            # connections are closed as they become idle. The grace period is a ceiling.
            runtime.stopping = True
            runtime.streams.tell_all("closing")  # live streams end now (they reconnect)
            with trio.move_on_after(settings.shutdown_grace_seconds) as grace:
                await connections.close_idle_until_done()
            if grace.cancelled_caught:
                log.warning(
                    "connections still open at the end of the grace period",
                    extra={"connections": "; ".join(connections.describe_live())},
                )
            sweeper.cancel()
        log.info("HTTP server stopped; draining profiles")


async def _watch_supervisor(parent: int, stop: trio.Event) -> None:
    """A worker whose supervisor is gone (killed) shuts down cleanly on its own."""
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("the supervisor is gone; shutting down")
            stop.set()
            return
        with trio.move_on_after(1):
            await stop.wait()


async def demo_page(runtime: Runtime, settings: Settings) -> DemoPage:
    """The ``/demo/`` page's keys: the demo Space's server key and a browser key that
    allows this server's own origin (the page is served from it)."""
    space, key = await runtime.db.run(admin.ensure_demo, settings.data_dir / "demo-key")
    origins = ["http://localhost:*", f"http://127.0.0.1:{settings.port}"]
    if settings.host not in ("localhost", "127.0.0.1", "0.0.0.0", "::"):
        parsed = browser_keys.parse_origin(f"http://{settings.host}:{settings.port}")
        origins += [parsed] if parsed else []
    browser_key = await runtime.db.run(
        browser_keys.ensure_demo, space.id, settings.data_dir / "demo-browser-key", origins
    )
    return DemoPage(runtime, key, browser_key)


async def load_demo(db: Database, programs: ProgramCatalog, settings: Settings) -> str:
    """The demo Space, its key and program; returns the banner that shows them."""
    space, key = await db.run(admin.ensure_demo, settings.data_dir / "demo-key")
    if await activate_demo(db, programs, space.id):
        log.info("loaded the demo program into %s", space.slug)
    password_file = settings.data_dir / "demo-operator"
    email, password = await db.run(ensure_demo_operator, password_file)
    return (
        f"Demo Space: {space.slug} ({space.environment})\n"
        f"API key (all scopes; also in {settings.data_dir / 'demo-key'}):\n  {key}\n"
        f"Console: http://{settings.host}:{settings.port}/console/\n"
        f"  operator {email} (admin), password {password} (also in {password_file})\n"
        f"Live widget (the browser flow): http://{settings.host}:{settings.port}/demo/\n"
    )


# hypercorn warns that `workers` does nothing under `serve`: we set it only for the socket
# option it implies (SO_REUSEPORT), and start the workers ourselves (ops/workers.py).
warnings.filterwarnings("ignore", "The config `workers` has no affect", Warning)


def _hypercorn_config(settings: Settings) -> tuple[Config, connections.Limits]:
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    # Several workers share the port (SO_REUSEPORT: the kernel spreads connections).
    config.workers = settings.workers
    config.graceful_timeout = settings.shutdown_grace_seconds
    # hypercorn's default backlog (100) drops the SYNs of a burst of new connections, which
    # clients then retry after 1, 2, 4 s: seconds of latency the server never sees. The
    # kernel caps this at net.core.somaxconn.
    config.backlog = 2048
    config.accesslog = None
    # A request's head is at most 16 KiB (docs/api.md (errors)): HTTP/1.1 request line and headers
    # (http1.py measures whole heads, h11 applies the bound to heads still arriving), and an
    # HTTP/2 header list (hypercorn's default is 64 KiB; beyond it h2 closes the connection).
    config.h11_max_incomplete_size = http1.HEAD_LIMIT
    config.h2_max_header_list_size = http1.HEAD_LIMIT
    config.errorlog = logging.getLogger("hypercorn.error")
    limits = connections.Limits(
        read_timeout=settings.read_timeout_seconds,
        max_connections=_connection_limit(settings.max_connections),
    )
    connections.install(limits)
    return config, limits
