"""The back-test's own process: it replays history off the server's process (the engine is
CPU-bound Python; in a thread it would hold the GIL the server's requests need), at a lower
scheduling priority so that live work goes first, and writes only its job row: progress
twice a second, then the report or the error.

It stops when the job is cancelled (its row says so) and when the server that started it is
gone (its parent process changed)."""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime
from typing import Any

from perkamo.configuration.versions import candidate_program
from perkamo.errors import PerkamoError
from perkamo.program import Program, compile_program
from perkamo.trials.backtest import Backtest
from storage import backtests as store
from storage import connect
from storage.history import config_bodies

log = logging.getLogger(__name__)

NICENESS = 10
PROGRESS_EVERY = 0.5  # seconds


def run(
    url: str,
    job_id: str,
    space_id: int,
    overrides: dict[str, str],
    window_from: datetime | None,
    window_to: datetime | None,
) -> None:
    """Replay the job's window and settle its row. The process entry point."""
    try:
        os.nice(NICENESS)
    except OSError:
        pass
    parent = os.getppid()
    with connect(url) as conn, connect(url, autocommit=True) as control:
        # The history's sort and the cursor's fetches may take longer than a request's
        # statement timeout; this connection serves the back-test alone.
        conn.execute("SET statement_timeout = 0")
        try:
            candidate = candidate_program(conn, space_id, overrides)
            total = store.count_window(conn, space_id, window_from, window_to)
            programs: dict[tuple[tuple[str, str], ...], Program] = {}

            def program_for(versions: Any) -> Program:
                key = tuple(sorted((m, v) for m, v in (versions or {}).items() if v is not None))
                if key not in programs:
                    bodies = config_bodies(conn, space_id, dict(key))
                    programs[key] = compile_program({m: (v, bodies[m]) for m, v in key})
                return programs[key]

            last = [time.monotonic()]
            stopped = [False]

            def on_events(done: int) -> bool:
                now = time.monotonic()
                if now - last[0] >= PROGRESS_EVERY:
                    last[0] = now
                    status = store.progress(control, job_id, done, total)
                    if status != "running" or os.getppid() != parent:
                        stopped[0] = True
                        return False
                return True

            backtest = Backtest(candidate, program_for)
            history = store.stream_history(conn, space_id, window_from, window_to)
            report = backtest.run(history, window_from, on_events)
            if stopped[0]:
                return  # cancelled (the row says so) or orphaned (the server settles it)
            store.progress(control, job_id, report.events, total)
            store.finish(control, job_id, "done", report.document())
        except Exception as exc:  # settled as failed, with a user-safe reason
            log.exception("back-test %s failed", job_id)
            reason = str(exc) if isinstance(exc, PerkamoError) else type(exc).__name__
            store.finish(control, job_id, "failed", error=reason)
