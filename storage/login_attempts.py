"""Console login attempts counted in PostgreSQL, per key (an account, a client address), in
fixed windows: every server process and every concurrent attempt sees the same count.

An attempt is counted *before* its password is checked, in one statement that locks the
key's row, so that N concurrent attempts can never all pass a check made before any of them
was recorded (40 concurrent wrong logins once got 8 password checks against a limit of 5).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

Conn = psycopg.Connection[Any]

_COUNT = """
INSERT INTO login_attempts AS a (key, window_start, attempts)
SELECT k, now(), 1 FROM unnest(%(keys)s::text[]) AS k ORDER BY k
ON CONFLICT (key) DO UPDATE SET
    window_start = CASE WHEN a.window_start <= now() - %(window)s * interval '1 second'
                        THEN now() ELSE a.window_start END,
    attempts = CASE WHEN a.window_start <= now() - %(window)s * interval '1 second'
                    THEN 1 ELSE a.attempts + 1 END
RETURNING attempts, window_start, now()
"""


def count_attempt(conn: Conn, keys: list[str], limit: int, window: float) -> float:
    """Count one attempt for each key; returns the seconds to wait when any key is past
    ``limit`` attempts in its window (the attempt must be refused), else 0."""
    conn.execute(
        "DELETE FROM login_attempts WHERE window_start < now() - %s * interval '1 second'",
        (window,),
    )
    rows = conn.execute(_COUNT, {"keys": sorted(set(keys)), "window": window}).fetchall()
    wait = 0.0
    for attempts, started, now in rows:
        if attempts > limit:
            wait = max(wait, _seconds_left(started, now, window))
    return wait


def _seconds_left(started: datetime, now: datetime, window: float) -> float:
    return max(0.0, window - (now - started).total_seconds())


def forget(conn: Conn, account: str, address: str) -> None:
    """A successful login: the account's count starts over, and the address's attempt is
    not held against it (it was not a failure)."""
    conn.execute("DELETE FROM login_attempts WHERE key = %s", (account,))
    conn.execute(
        "UPDATE login_attempts SET attempts = greatest(attempts - 1, 0) WHERE key = %s",
        (address,),
    )
