"""Back-test jobs of this server process: started in a process of their own
(perkamo/trials/worker.py), supervised, cancelled through their row.

After a restart a job is not resumed: a job whose server process stopped is marked
``failed`` ("interrupted…") when any server starts (or at its next start), and is started
again by posting it again — its replay writes nothing but its row, so nothing is half done.
"""

from __future__ import annotations

import logging
import multiprocessing
import secrets
from datetime import datetime

import trio

from perkamo.configuration.versions import candidate_program
from perkamo.errors import Code, PerkamoError
from perkamo.trials import worker
from storage import Database, StorageUnavailable
from storage import backtests as store

log = logging.getLogger(__name__)

_spawn = multiprocessing.get_context("spawn")


class BacktestRunner:
    def __init__(self, url: str, db: Database, member: str, nursery: trio.Nursery) -> None:
        self._url = url
        self._db = db
        self._member = member
        self._nursery = nursery

    async def recover(self, alive: float) -> None:
        """Settle the jobs whose server process stopped (no heartbeat for ``alive`` s)."""
        for job_id in await self._db.run(store.orphans, alive):
            log.warning("back-test %s was interrupted by a stopped server; marked failed", job_id)

    async def start(
        self,
        space_id: int,
        overrides: dict[str, str],
        window_from: datetime | None,
        window_to: datetime | None,
    ) -> store.Job:
        """Validate the candidate program and start the job. Raises PerkamoError:
        unknown_module, unknown_version, invalid_config, backtest_running."""
        await self._db.run(candidate_program, space_id, overrides)
        job_id = "bt_" + secrets.token_hex(12)
        try:
            job = await self._db.run(
                store.create, job_id, space_id, overrides, window_from, window_to, self._member
            )
        except store.AlreadyRunning:
            raise PerkamoError(
                Code.BACKTEST_RUNNING,
                "A back-test is already running for this Space; wait for it or cancel it.",
            ) from None
        self._nursery.start_soon(self._supervise, job)
        return job

    async def _supervise(self, job: store.Job) -> None:
        process = _spawn.Process(
            target=worker.run,
            args=(self._url, job.id, job.space_id, job.program, job.window_from, job.window_to),
            name=f"perkamo-backtest-{job.id}",
            daemon=True,
        )
        process.start()
        # At once, not only from inside: the new interpreter's imports (a second of CPU)
        # would otherwise run at the live requests' priority.
        if process.pid is not None:  # (never 0: that would be this server)
            worker.lowest_priority(process.pid)
        try:
            await trio.to_thread.run_sync(process.join, abandon_on_cancel=True)
        finally:
            with trio.CancelScope(shield=True):
                if process.is_alive():
                    process.terminate()
                    await trio.to_thread.run_sync(process.join, 5)
                ended = "the server stopped" if process.exitcode != 0 else "it ended early"
                reason = f"interrupted: {ended}; start it again"
                await self._record_end(job, reason)

    async def _record_end(self, job: store.Job, reason: str, tries: int = 5) -> None:
        """Mark a job that ended without its report failed; storage that is briefly
        unavailable (no connection free in time) is tried again, never a crash."""
        for attempt in range(tries):
            try:
                if await self._db.run(store.finish, job.id, "failed", None, reason):
                    log.warning("back-test %s did not finish: %s", job.id, reason)
                return
            except StorageUnavailable:
                await trio.sleep(1.0 + attempt)
        log.warning("back-test %s ended; storage did not take its end", job.id)

    async def cancel(self, space_id: int, job_id: str) -> store.Job:
        job = await self._db.run(store.cancel, space_id, job_id)
        if job is None:
            raise PerkamoError(Code.BACKTEST_NOT_FOUND, f"No back-test {job_id!r}.")
        return job
