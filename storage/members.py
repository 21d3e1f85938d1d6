"""The members table (which server processes share this database, by heartbeat), the
cluster's secret, and shard ownership as session advisory locks on a member's own
connection (docs/architecture.md "Several processes and nodes")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class MemberRow:
    id: str
    address: str | None
    host: str
    pid: int
    shards: tuple[int, ...]
    heartbeat_age: float  # seconds
    alive: bool  # its PostgreSQL session (the one holding its locks) still exists
    started_at: datetime
    backend_pid: int | None


def register(conn: Conn, member_id: str, host: str, pid: int, address: str | None) -> None:
    conn.execute(
        "INSERT INTO members (id, host, pid, address, backend_pid)"
        " VALUES (%s, %s, %s, %s, pg_backend_pid())",
        (member_id, host, pid, address),
    )


def heartbeat(conn: Conn, member_id: str, shards: list[int]) -> list[MemberRow]:
    """Refresh this member's heartbeat and the shards it publishes; returns every member's
    row (this one included). Raises LookupError when this member's row was removed."""
    updated = conn.execute(
        "UPDATE members SET heartbeat_at = now(), shards = %s, backend_pid = pg_backend_pid()"
        " WHERE id = %s",
        (shards, member_id),
    )
    if updated.rowcount == 0:
        raise LookupError("this member's row is gone")
    return all_members(conn)


def all_members(conn: Conn) -> list[MemberRow]:
    rows = conn.execute(
        "SELECT m.id, m.address, m.host, m.pid, m.shards,"
        " extract(epoch FROM clock_timestamp() - m.heartbeat_at)::float8,"
        " EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = m.backend_pid),"
        " m.started_at, m.backend_pid"
        " FROM members m ORDER BY m.started_at, m.id"
    ).fetchall()
    return [MemberRow(r[0], r[1], r[2], r[3], tuple(r[4]), *r[5:]) for r in rows]


def leave(conn: Conn, member_id: str) -> None:
    conn.execute("DELETE FROM members WHERE id = %s", (member_id,))


def cluster_secret(conn: Conn, candidate: str) -> str:
    """The cluster's secret: ``candidate`` if this is the first member ever, else the one
    stored."""
    conn.execute(
        "INSERT INTO cluster_secret (secret) VALUES (%s) ON CONFLICT (id) DO NOTHING",
        (candidate,),
    )
    row = conn.execute("SELECT secret FROM cluster_secret").fetchone()
    assert row is not None
    return str(row[0])


def lock_holders(conn: Conn, namespace: int) -> dict[int, int]:
    """shard → the backend pid holding its lock (PostgreSQL's lock table: the truth)."""
    rows = conn.execute(
        "SELECT objid::bigint, pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND classid = %s::bigint::oid AND objsubid = 2",
        (namespace,),
    ).fetchall()
    return {int(r[0]): int(r[1]) for r in rows}


def try_lock(conn: Conn, namespace: int, shards: list[int]) -> list[int]:
    """Take the free ones among ``shards`` (session locks); returns those taken."""
    rows = conn.execute(
        "SELECT s FROM unnest(%s::int[]) s WHERE pg_try_advisory_lock(%s::int, s)",
        (shards, namespace),
    ).fetchall()
    return [int(r[0]) for r in rows]


def unlock(conn: Conn, namespace: int, shards: list[int]) -> None:
    conn.execute(
        "SELECT pg_advisory_unlock(%s::int, s) FROM unnest(%s::int[]) s", (namespace, shards)
    )
