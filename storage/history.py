"""A profile's history in processing order: events, redemptions and identifies, ordered by
the profile version their unit committed and their position in it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str  # event | redemption | identify
    profile_version: int
    position: int
    name: str  # event key, reward key, or "" for identify
    payload: Any  # event context, or the identify traits patch
    occurred_at: datetime | None
    received_at: datetime
    program_versions: Any


_HISTORY = """
SELECT 'event', profile_version, position, event, context, occurred_at, received_at,
       outcome -> 'program_versions'
FROM events WHERE space_id = %(s)s AND user_id = %(u)s
UNION ALL
SELECT 'redemption', profile_version, position, reward_key, context, NULL, received_at,
       outcome -> 'program_versions'
FROM redemptions WHERE space_id = %(s)s AND user_id = %(u)s
UNION ALL
SELECT 'identify', profile_version, position, '', traits, NULL, received_at,
       program_versions::json
FROM identifies WHERE space_id = %(s)s AND user_id = %(u)s
ORDER BY 2, 3
"""


def profile_history(conn: Conn, space_id: int, user_id: str) -> list[Entry]:
    rows = conn.execute(_HISTORY, {"s": space_id, "u": user_id}).fetchall()
    return [Entry(*row) for row in rows]


def config_bodies(conn: Conn, space_id: int, versions: dict[str, str]) -> dict[str, Any]:
    """Module bodies of the given (module → version) labels."""
    bodies = {}
    for module, version in versions.items():
        row = conn.execute(
            "SELECT body FROM config_versions WHERE space_id = %s AND module = %s AND version = %s",
            (space_id, module, version),
        ).fetchone()
        if row is not None:
            bodies[module] = row[0]
    return bodies
