"""What PostgreSQL says about the durability of a commit: the settings that decide whether an
acknowledged write survives a crash or the loss of the primary, and the state of each
standby (``perkamo doctor`` judges them; perkamo/cli/doctor.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

Conn = psycopg.Connection[Any]

SETTINGS = (
    "fsync",
    "full_page_writes",
    "synchronous_commit",
    "synchronous_standby_names",
    "max_locks_per_transaction",
    "max_connections",
    "max_prepared_transactions",
    "server_version",
)


@dataclass(frozen=True, slots=True)
class Standby:
    name: str  # its application_name (what synchronous_standby_names refers to)
    address: str | None
    state: str  # streaming, catchup, startup, backup, stopping
    sync_state: str  # sync, quorum, potential, async
    behind_bytes: int | None  # WAL the primary has that the standby has not flushed
    replay_lag_seconds: float | None


@dataclass(frozen=True, slots=True)
class Durability:
    settings: dict[str, str]
    in_recovery: bool  # connected to a standby (a URL that allows one)
    standbys: list[Standby]


def durability(conn: Conn) -> Durability:
    settings = {
        name: str(value)
        for name, value in conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(SETTINGS),)
        ).fetchall()
    }
    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    in_recovery = bool(row and row[0])
    standbys: list[Standby] = []
    if not in_recovery:
        rows = conn.execute(
            "SELECT application_name, host(client_addr), state, sync_state,"
            " pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn)::bigint,"
            " extract(epoch FROM replay_lag)::float8"
            " FROM pg_stat_replication ORDER BY application_name"
        ).fetchall()
        standbys = [Standby(*r) for r in rows]
    return Durability(settings, in_recovery, standbys)
