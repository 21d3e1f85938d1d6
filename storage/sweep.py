"""The profiles the sweeper must tick: those whose next due time (written with every
snapshot, migration 0023) has come, soonest first, of the shards a member owns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class Due:
    space_id: int
    user_id: str
    due_at: datetime

    @property
    def cursor(self) -> tuple[datetime, int, str]:
        return (self.due_at, self.space_id, self.user_id)


_ALL = (
    "SELECT space_id, user_id, next_due AS due_at FROM profiles"
    " WHERE next_due <= %(until)s AND (next_due, space_id, user_id) > (%(at)s, %(s)s, %(u)s)"
    " ORDER BY next_due, space_id, user_id LIMIT %(n)s"
)
_SHARDS = (
    "SELECT space_id, user_id, next_due AS due_at FROM profiles"
    " WHERE next_due <= %(until)s AND (next_due, space_id, user_id) > (%(at)s, %(s)s, %(u)s)"
    " AND due_shard = ANY(%(shards)s) ORDER BY next_due, space_id, user_id LIMIT %(n)s"
)


def due_profiles(
    conn: Conn,
    until: datetime,
    shards: list[int] | None,
    after: tuple[datetime, int, str] | None,
    limit: int,
) -> list[Due]:
    """At most ``limit`` profiles due at or before ``until`` and after the cursor ``after``
    (due time, Space, user), in that order; of the given shards (None: every shard). Walks
    the partial index on (next_due, space_id, user_id)."""
    at, space, user = after or (until.replace(year=1), 0, "")
    params = {"until": until, "at": at, "s": space, "u": user, "n": limit, "shards": shards}
    with conn.cursor(row_factory=class_row(Due)) as cur:
        cur.execute(_ALL if shards is None else _SHARDS, params)
        return cur.fetchall()
