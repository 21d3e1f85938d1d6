"""``perkamo serve --workers N``: a supervisor and N member processes on one host.

The supervisor starts the embedded PostgreSQL (unless a URL is given), applies migrations
and the demo Space once, then starts N ``perkamo serve`` workers sharing the HTTP port
(SO_REUSEPORT), each with its own internal port (the cluster address's port + i, or a free
one). It restarts a worker that dies, and on SIGTERM/SIGINT asks every worker to shut down
(each answers what it has in flight, drains its actors and flushes) before stopping the
database.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

import trio

from perkamo.configuration import ProgramCatalog
from perkamo.server.server import DEMO_PAGE, WORKER_OF, database, load_demo
from perkamo.settings import Settings
from storage import open_database
from storage.migrations import migrate

log = logging.getLogger(__name__)

READY = b"Perkamo is listening"
START_SECONDS = 60.0  # a worker that has not listened by then is restarted
RESTART_BACKOFF = (0.5, 15.0)  # first and longest wait before restarting a dead worker


class WorkerFailed(Exception):
    """A worker could not start."""


def internal_address(settings: Settings, index: int) -> str:
    host, _, port = settings.cluster_address.rpartition(":")
    return f"{host}:{int(port) + index if int(port) else 0}"


class Worker:
    def __init__(self, index: int, settings: Settings, url: str, demo: bool = False) -> None:
        self.index = index
        self._demo = demo
        self._settings = settings
        self._url = url
        self.process: trio.Process | None = None
        self.restarts = 0

    def _environment(self) -> dict[str, str]:
        s = self._settings
        return {
            **os.environ,
            "PERKAMO_DATABASE_URL": self._url,
            "PERKAMO_DATA_DIR": str(s.data_dir),
            "PERKAMO_HOST": s.host,
            "PERKAMO_PORT": str(s.port),
            "PERKAMO_LOG_LEVEL": s.log_level,
            "PERKAMO_WORKERS": str(s.workers),
            "PERKAMO_CLUSTER_ADDRESS": internal_address(s, self.index),
            "PERKAMO_MAX_STREAMS": str(s.max_streams),
            "PERKAMO_TOKEN_ISSUER": s.token_issuer,
            WORKER_OF: str(os.getpid()),
            **({DEMO_PAGE: "1"} if self._demo else {}),
        }

    async def start(self, nursery: trio.Nursery) -> None:
        """Start the worker; returns once it listens (raises WorkerFailed otherwise)."""
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "perkamo", "serve"],
            env=self._environment(),
            stdout=subprocess.PIPE,
        )
        self.process = process
        assert process.stdout is not None
        listening = trio.Event()
        nursery.start_soon(_relay, process.stdout, listening)
        with trio.move_on_after(START_SECONDS):
            async with trio.open_nursery() as race:
                race.start_soon(_set_when_done, process, listening)
                await listening.wait()
                race.cancel_scope.cancel()
        if process.returncode is not None or not listening.is_set():
            if process.returncode is None:
                process.kill()
            raise WorkerFailed(f"worker {self.index} did not start")

    def terminate(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)


async def _set_when_done(process: trio.Process, event: trio.Event) -> None:
    await process.wait()
    event.set()


async def _relay(stream: trio.abc.ReceiveStream, listening: trio.Event) -> None:
    """The worker's standard output, passed on (its readiness line is ours to print)."""
    buffer = b""
    async for chunk in stream:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.startswith(READY):
                listening.set()
                continue
            if line.strip():
                sys.stdout.buffer.write(line + b"\n")
                sys.stdout.flush()


async def supervise(settings: Settings, *, demo: bool = False) -> None:
    async with database(settings) as url:
        async with open_database(url, max_size=2, timeouts=settings.timeouts) as db:
            await db.run(migrate)
            banner = await load_demo(db, ProgramCatalog(db), settings) if demo else ""
        async with trio.open_nursery() as nursery:
            workers = [Worker(i, settings, url, demo) for i in range(settings.workers)]
            for worker in workers:
                await worker.start(nursery)
            stopping = trio.Event()
            for worker in workers:
                nursery.start_soon(_keep_running, worker, nursery, stopping)
            print(
                f"Perkamo is listening on http://{settings.host}:{settings.port}"
                f" ({settings.workers} workers)\n{banner}",
                flush=True,
            )
            await _wait_for_signal()
            stopping.set()
            await _stop(workers, settings.shutdown_grace_seconds + 20)
            nursery.cancel_scope.cancel()
    log.info("shutdown complete")


async def _stop(workers: list[Worker], seconds: float) -> None:
    """Ask every worker to shut down; kill those still running after ``seconds``."""
    for worker in workers:
        worker.terminate()
    with trio.move_on_after(seconds):
        for worker in workers:
            if worker.process is not None:
                await worker.process.wait()
    for worker in workers:
        if worker.process is not None and worker.process.returncode is None:
            log.error("worker %d did not stop in time; killing it", worker.index)
            worker.process.kill()


async def _wait_for_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s, stopping the workers", signal.Signals(signum).name)
            return


async def _keep_running(worker: Worker, nursery: trio.Nursery, stopping: trio.Event) -> None:
    """Restart the worker whenever it dies (with backoff), until the shutdown."""
    backoff = RESTART_BACKOFF[0]
    while True:
        assert worker.process is not None
        await worker.process.wait()
        if stopping.is_set():
            return
        log.error(
            "worker %d exited (status %s); restarting it", worker.index, worker.process.returncode
        )
        await trio.sleep(backoff)
        if stopping.is_set():
            return
        try:
            await worker.start(nursery)
            worker.restarts += 1
            backoff = RESTART_BACKOFF[0]
        except WorkerFailed:
            backoff = min(backoff * 2, RESTART_BACKOFF[1])
