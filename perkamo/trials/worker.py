"""The back-test's own process: it replays history off the server's process (the engine is
CPU-bound Python; in a thread it would hold the GIL the server's requests need), in the idle
scheduling class so that live work goes first, and writes only its job row: progress twice a
second, then the report or the error.

It stops when the job is cancelled (its row says so) and when the server that started it is
gone (its parent process changed)."""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime

from perkamo.configuration.versions import candidate_program
from perkamo.errors import PerkamoError
from perkamo.program import Program, compile_program
from perkamo.trials.backtest import Backtest
from storage import backtests as store
from storage import connect
from storage.history import config_bodies

log = logging.getLogger(__name__)

NICENESS = 19  # where the idle class is refused: the lowest ordinary priority
PROGRESS_EVERY = 0.5  # seconds


def lowest_priority(pid: int) -> None:
    """Live work first: ``pid`` (0: this process) runs in Linux's idle scheduling class,
    only on a CPU nothing else wants, and any woken live task takes the CPU back at once.
    Niceness 19 alone still cost the live p99 1.9 × (bench/notes.md, "Session 5"); with the
    idle class it was 1.00–1.32 × over five runs. Best effort: niceness 19 where refused."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, NICENESS)
        os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):  # not Linux, or not allowed
        pass


def _lower_backend_priority(pid: int) -> None:
    """The PostgreSQL process serving the replay gets the lowest priority too, when it
    runs on this machine (the embedded server; checked by its name, so that a remote
    server's pid is never taken for a local process). It only reads, a page of profiles at
    a time."""
    try:
        with open(f"/proc/{pid}/comm", encoding="ascii") as comm:
            if comm.read().strip() != "postgres":
                return
    except OSError:
        return
    lowest_priority(pid)


class Yielding:
    """Live work first: the replay measures how busy its server is (the parent process's
    CPU time) and runs only the rest of the time — a slice of 0.1 s, then a pause as long
    as the server's share asks (an idle server: no pause; one busy 90 % of a core: the
    replay runs a tenth of the time). Sharing two cores (or one core's hyperthreads) with
    the server, niceness alone did not keep the live p99 (bench/RESULTS.md)."""

    SLICE = 0.1

    def __init__(self, parent: int) -> None:
        self._parent = parent
        self._tick = os.sysconf("SC_CLK_TCK")
        self._started = time.monotonic()
        self._cpu = self._parent_cpu()

    def _parent_cpu(self) -> float:
        try:
            with open(f"/proc/{self._parent}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / self._tick
        except (OSError, IndexError, ValueError):
            return 0.0

    def pause(self) -> None:
        now = time.monotonic()
        elapsed = now - self._started
        if elapsed < self.SLICE:
            return
        cpu = self._parent_cpu()
        busy = min(max((cpu - self._cpu) / elapsed, 0.0), 0.95)
        if busy > 0.05:
            time.sleep(self.SLICE * busy / (1 - busy))
        self._started, self._cpu = time.monotonic(), self._parent_cpu()


def run(
    url: str,
    job_id: str,
    space_id: int,
    overrides: dict[str, str],
    window_from: datetime | None,
    window_to: datetime | None,
) -> None:
    """Replay the job's window and settle its row. The process entry point."""
    lowest_priority(0)
    # The history as of now at the latest: pages read later must not see newer writes.
    started = datetime.now(UTC)
    window_to = started if window_to is None or window_to > started else window_to
    parent = os.getppid()
    with connect(url) as conn, connect(url, autocommit=True) as control:
        store.prepare_reader(conn)  # this connection serves the back-test alone
        _lower_backend_priority(conn.info.backend_pid)
        try:
            candidate = candidate_program(conn, space_id, overrides)
            total = store.count_window(conn, space_id, window_from, window_to)
            programs: dict[str | None, Program] = {}

            def program_for(versions: str | None) -> Program:
                """The program a write recorded (its versions as JSON text), compiled once."""
                if versions not in programs:
                    chosen = {m: v for m, v in json.loads(versions or "{}").items() if v}
                    bodies = config_bodies(conn, space_id, chosen)
                    programs[versions] = compile_program(
                        {m: (v, bodies[m]) for m, v in chosen.items()}
                    )
                return programs[versions]

            last = [time.monotonic()]
            stopped = [False]
            yielding = Yielding(parent)

            def on_events(done: int) -> bool:
                yielding.pause()
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
            report = backtest.run(history, window_from, on_events, window_to)
            if stopped[0]:
                return  # cancelled (the row says so) or orphaned (the server settles it)
            store.progress(control, job_id, report.events, total)
            store.finish(control, job_id, "done", report.document())
        except Exception as exc:  # settled as failed, with a user-safe reason
            log.exception("back-test %s failed", job_id)
            reason = str(exc) if isinstance(exc, PerkamoError) else type(exc).__name__
            store.finish(control, job_id, "failed", error=reason)
