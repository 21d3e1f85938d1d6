"""The members table: which server processes share this database, by heartbeat."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

Conn = psycopg.Connection[Any]


def register(conn: Conn, member_id: str, host: str, pid: int, address: str | None) -> None:
    conn.execute(
        "INSERT INTO members (id, host, pid, address) VALUES (%s, %s, %s, %s)",
        (member_id, host, pid, address),
    )


def heartbeat(conn: Conn, member_id: str, peer_timeout: float) -> int:
    """Refresh this member's heartbeat (re-registering it if its row was removed); returns
    how many other members have a heartbeat younger than ``peer_timeout`` seconds."""
    row = conn.execute(
        "WITH me AS (UPDATE members SET heartbeat_at = now() WHERE id = %s RETURNING id)"
        " SELECT (SELECT count(*) FROM me),"
        " (SELECT count(*) FROM members WHERE id <> %s"
        "  AND heartbeat_at > now() - make_interval(secs => %s))",
        (member_id, member_id, peer_timeout),
    ).fetchone()
    assert row is not None
    if row[0] == 0:
        raise LookupError("this member's row is gone")
    return int(row[1])


def leave(conn: Conn, member_id: str) -> None:
    conn.execute("DELETE FROM members WHERE id = %s", (member_id,))


def members(conn: Conn) -> list[tuple[str, str | None, str, int, datetime, datetime]]:
    """(id, address, host, pid, started_at, heartbeat_at), oldest first."""
    return conn.execute(
        "SELECT id, address, host, pid, started_at, heartbeat_at FROM members"
        " ORDER BY started_at, id"
    ).fetchall()
