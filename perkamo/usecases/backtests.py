"""Back-tests (API §7): start one for a candidate program, read one or all, cancel — the same
for the API, the console and ``perkamo backtest``."""

from __future__ import annotations

from datetime import datetime

from perkamo.errors import Code, PerkamoError
from perkamo.http.responses import BacktestDocument, BacktestProgress
from perkamo.program.timefmt import format_rfc3339
from perkamo.runtime import Runtime
from storage import backtests as backtest_store
from storage.backtests import Job


def backtest_document(job: Job) -> BacktestDocument:
    return BacktestDocument(
        id=job.id,
        status=job.status,
        created_at=format_rfc3339(job.created_at),
        finished_at=_time(job.finished_at),
        program=job.program,
        from_=_time(job.window_from),
        to=_time(job.window_to),
        progress=BacktestProgress(job.events_done, job.events_total),
        report=job.report,
        error=job.error,
    )


async def start(
    runtime: Runtime,
    space_id: int,
    program: dict[str, str],
    window_from: datetime | None,
    window_to: datetime | None,
) -> BacktestDocument:
    job = await runtime.backtests.start(space_id, program, window_from, window_to)
    return backtest_document(job)


async def listing(runtime: Runtime, space_id: int) -> list[BacktestDocument]:
    """The Space's back-tests, newest first."""
    jobs = await runtime.db.run(backtest_store.list_jobs, space_id)
    return [backtest_document(job) for job in jobs]


async def read(runtime: Runtime, space_id: int, job_id: str) -> BacktestDocument:
    job = await runtime.db.run(backtest_store.get, space_id, job_id)
    if job is None:
        raise PerkamoError(Code.BACKTEST_NOT_FOUND, f"No back-test {job_id!r}.")
    return backtest_document(job)


async def cancel(runtime: Runtime, space_id: int, job_id: str) -> BacktestDocument:
    return backtest_document(await runtime.backtests.cancel(space_id, job_id))


def _time(value: datetime | None) -> str | None:
    return format_rfc3339(value) if value is not None else None
