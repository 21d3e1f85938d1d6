"""Back-test jobs (their rows) and the history they replay, streamed in processing order."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from .history import FAR_FUTURE, FAR_PAST, HISTORY, HistoryRow
from .log_tables import LOG_TABLES

Conn = psycopg.Connection[Any]
ROWS_PER_READ = 5000  # writes one read of the history brings, about
MAX_PROFILES_PER_READ = 2000  # profiles one read names (the users array's size)


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    space_id: int
    status: str
    created_at: datetime
    finished_at: datetime | None
    program: dict[str, str]
    window_from: datetime | None
    window_to: datetime | None
    events_done: int
    events_total: int
    report: Any
    error: str | None
    member: str | None


_JOB = (
    "SELECT id, space_id, status, created_at, finished_at, program, window_from, window_to,"
    " events_done, events_total, report, error, member FROM backtests WHERE space_id = %s"
    " AND id = %s"
)
_JOBS = (
    "SELECT id, space_id, status, created_at, finished_at, program, window_from, window_to,"
    " events_done, events_total, report, error, member FROM backtests WHERE space_id = %s"
    " ORDER BY created_at DESC, id DESC LIMIT %s"
)


class AlreadyRunning(Exception):
    """The Space has a running back-test."""


def create(
    conn: Conn,
    job_id: str,
    space_id: int,
    program: dict[str, str],
    window_from: datetime | None,
    window_to: datetime | None,
    member: str | None,
) -> Job:
    try:
        with conn.transaction():
            conn.execute(
                "INSERT INTO backtests (id, space_id, status, program, window_from, window_to,"
                " member) VALUES (%s, %s, 'running', %s, %s, %s, %s)",
                (job_id, space_id, Jsonb(program), window_from, window_to,
                 member),
            )  # fmt: skip
    except psycopg.errors.UniqueViolation:
        raise AlreadyRunning(space_id) from None
    job = get(conn, space_id, job_id)
    assert job is not None
    return job


def get(conn: Conn, space_id: int, job_id: str) -> Job | None:
    with conn.cursor(row_factory=class_row(Job)) as cur:
        cur.execute(_JOB, (space_id, job_id))
        return cur.fetchone()


def list_jobs(conn: Conn, space_id: int, limit: int = 100) -> list[Job]:
    with conn.cursor(row_factory=class_row(Job)) as cur:
        cur.execute(_JOBS, (space_id, limit))
        return cur.fetchall()


def progress(conn: Conn, job_id: str, done: int, total: int) -> str:
    """Record progress; returns the job's status (``cancelled`` tells the runner to stop)."""
    row = conn.execute(
        "UPDATE backtests SET events_done = %s, events_total = %s WHERE id = %s RETURNING status",
        (done, total, job_id),
    ).fetchone()
    return "missing" if row is None else str(row[0])


def finish(
    conn: Conn, job_id: str, status: str, report: Any = None, error: str | None = None
) -> bool:
    """Settle a running job (done, failed); False when it was no longer running."""
    row = conn.execute(
        "UPDATE backtests SET status = %s, report = %s, error = %s, finished_at = now()"
        " WHERE id = %s AND status = 'running' RETURNING id",
        (status, None if report is None else Jsonb(report), error, job_id),
    ).fetchone()
    return row is not None


def cancel(conn: Conn, space_id: int, job_id: str) -> Job | None:
    """Cancel a running job (a settled one stays as it is); None: no such job."""
    conn.execute(
        "UPDATE backtests SET status = 'cancelled', finished_at = now()"
        " WHERE space_id = %s AND id = %s AND status = 'running'",
        (space_id, job_id),
    )
    return get(conn, space_id, job_id)


def orphans(conn: Conn, alive: float) -> list[str]:
    """Running jobs whose member has had no heartbeat for ``alive`` seconds: interrupted."""
    rows = conn.execute(
        "UPDATE backtests b SET status = 'failed', finished_at = now(),"
        " error = 'interrupted: the server process running it stopped; start it again'"
        " WHERE b.status = 'running' AND NOT EXISTS (SELECT 1 FROM members m"
        "  WHERE m.id = b.member AND m.heartbeat_at > now() - make_interval(secs => %s))"
        " RETURNING b.id",
        (alive,),
    ).fetchall()
    return [str(r[0]) for r in rows]


Write = HistoryRow  # one write of a profile's history, as a back-test replays it

# The profiles with a write inside the window, in user order, a page at a time: each log
# table's first distinct users after the last page (an index range scan each), the page the
# smallest of them.
_TOUCHED = sql.SQL("SELECT user_id FROM ({}) touched ORDER BY user_id LIMIT %(n)s").format(
    sql.SQL(" UNION ").join(
        sql.SQL(
            "(SELECT DISTINCT user_id FROM {} WHERE space_id = %(s)s AND user_id > %(after)s"
            " AND received_at >= %(from)s AND received_at < %(to)s ORDER BY user_id"
            " LIMIT %(n)s)"
        ).format(sql.Identifier(table))
        for table in dict.fromkeys(t.stored_in for t in LOG_TABLES)
    )
)

_COUNT = (
    "SELECT count(*) FROM events WHERE space_id = %(s)s"
    " AND received_at >= %(from)s AND received_at < %(to)s"
)


def _bounds(window_from: datetime | None, window_to: datetime | None) -> dict[str, Any]:
    return {"from": window_from or FAR_PAST, "to": window_to or FAR_FUTURE}


def count_window(
    conn: Conn, space_id: int, window_from: datetime | None, window_to: datetime | None
) -> int:
    """Events received inside the window (the progress denominator)."""
    row = conn.execute(_COUNT, {"s": space_id, **_bounds(window_from, window_to)}).fetchone()
    assert row is not None
    return int(row[0])


def prepare_reader(conn: Conn) -> None:
    """The replay's own connection: each statement its own transaction (autocommit), so no
    snapshot is held for the back-test's duration — a long-held one keeps vacuum from
    pruning the rows live traffic updates many times a second (usage meters, profile
    snapshots), and slowed every live commit while a back-test ran. Neither a page's sort
    nor its wait for a busy server is cut short by a request's statement timeout; a page
    sorts in memory."""
    conn.autocommit = True
    conn.execute("SET statement_timeout = 0")
    conn.execute("SET work_mem = '32MB'")


def stream_history(
    conn: Conn,
    space_id: int,
    window_from: datetime | None,
    window_to: datetime | None,
    rows: int = ROWS_PER_READ,
) -> Iterator[Write]:
    """Every write of every profile with a write in the window, up to the window's end, in
    processing order by profile: a page of profiles at a time (in user order), read one
    page ahead on a thread of its own while the caller replays the last (psycopg waits for
    the server without the GIL). A page holds about ``rows`` writes: its number of profiles
    follows the last page's writes per profile (a profile is never split, so one longer
    history makes one longer page). Memory: three pages. Each page is read by statements of
    its own (``prepare_reader``): a profile's history is always read whole, in one statement;
    the caller bounds the window's end so that later pages do not see writes received after
    the first was read."""
    params = {"s": space_id, **_bounds(window_from, window_to)}

    def pages() -> Iterator[list[Write]]:
        after, profiles = "", min(10, rows)  # the first page learns the histories' length
        while True:
            users = [
                r[0] for r in conn.execute(_TOUCHED, {**params, "after": after, "n": profiles})
            ]
            if not users:
                return
            # Tuples in the binary protocol: cheaper to parse than a row class over text.
            with conn.cursor(binary=True) as cur:
                cur.execute(HISTORY, {**params, "users": users})
                page = [Write._make(row) for row in cur]
            yield page
            after = users[-1]
            per_profile = max(len(page), 1) / len(users)
            profiles = min(max(int(rows / per_profile), 1), MAX_PROFILES_PER_READ)

    return _read_ahead(pages())


def _read_ahead(pages: Iterator[list[Write]]) -> Iterator[Write]:
    """The pages' writes, the next page read on a thread while this one is consumed. A
    failure on the thread is raised here; a consumer that stops early stops the thread
    after the page it is reading."""
    ready: queue.Queue[list[Write] | BaseException | None] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def read() -> None:
        try:
            for page in pages:
                if stop.is_set():
                    return
                ready.put(page)
            ready.put(None)
        except BaseException as exc:  # handed over to the consumer
            ready.put(exc)

    reader = threading.Thread(target=read, name="backtest-history", daemon=True)
    reader.start()
    try:
        while (page := ready.get()) is not None:
            if isinstance(page, BaseException):
                raise page
            yield from page
    finally:
        stop.set()
        while reader.is_alive():  # unblock a reader waiting to hand over its page
            try:
                ready.get(timeout=0.05)
            except queue.Empty:
                pass
        reader.join()
